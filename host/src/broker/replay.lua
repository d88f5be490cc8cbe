-- Sluice dead-letter replay: moves dead letters back to the input stream with their
-- original fields (the leading `sluice.*` metadata fields dropped), and deletes them
-- from the dead-letter stream, in one atomic step per call. A letter that holds no copy
-- (its entry was too wide to copy: the reason names the original) is kept and reported.
--
-- KEYS[1]   the dead-letter stream
-- KEYS[2]   the input stream
-- ARGV[1]   how many metadata fields lead each dead letter
-- ARGV[2]   how many letters to look at at most
-- ARGV[3]   how many fields to write at most (a letter is never split: the first one
--           is replayed whatever its width)
-- ARGV[4]   with no ids: the ID to start after ('-' for the start)
-- ARGV[5..] the ids to replay (none: the oldest after ARGV[4])
-- Returns { replayed, last ID looked at ('' if none), kept IDs... }; with ids, the
-- letters not looked at (over the field budget) are the ones after the last ID looked at.

-- spread(t, i, j): see spread.lua, prepended to this script.

local meta, limit, budget = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local result = { 0, '' }
local written = 0

-- Replays one letter; false once the field budget is spent (the letter is left).
local function replay(entry)
  local id, fields = entry[1], entry[2]
  local args = {}
  for i = 1, #fields, 2 do
    local pair = (i + 1) / 2
    if not (pair <= meta and string.sub(fields[i], 1, 7) == 'sluice.') then
      args[#args + 1] = fields[i]
      args[#args + 1] = fields[i + 1]
    end
  end
  if written > 0 and written + #args / 2 > budget then
    return false
  end
  result[2] = id
  if #args == 0 then
    result[#result + 1] = id
    return true
  end
  redis.call('XADD', KEYS[2], '*', spread(args, 1, #args))
  redis.call('XDEL', KEYS[1], id)
  written = written + #args / 2
  result[1] = result[1] + 1
  return true
end

if #ARGV == 4 then
  local start = ARGV[4] == '-' and '-' or '(' .. ARGV[4]
  for _, entry in ipairs(redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', limit)) do
    if not replay(entry) then
      break
    end
  end
else
  for i = 5, #ARGV do
    local found = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
    if #found == 1 then
      if not replay(found[1]) then
        break
      end
    else
      result[2] = ARGV[i]
    end
  end
end
return result
