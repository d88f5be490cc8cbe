-- Sluice dead-letter replay: moves dead letters back to the input stream with their
-- original fields (the leading `sluice.*` metadata fields dropped), and deletes them
-- from the dead-letter stream, in one atomic step per call. A letter that holds no copy
-- (its entry was too wide to copy: the reason names the original) is kept and reported.
-- The caller says where to start and learns how far the call got: it never has to look
-- an answer up to go on (dead/replay.rs).
--
-- KEYS[1]   the dead-letter stream
-- KEYS[2]   the input stream
-- ARGV[1]   how many metadata fields lead each dead letter
-- ARGV[2]   how many letters to look at at most
-- ARGV[3]   how many fields to write at most (a letter is never split: the first one
--           is replayed whatever its width)
-- ARGV[4]   'range' or 'ids'
-- 'range':  ARGV[5] the ID to start after ('-' for the start), ARGV[6] the last ID to
--           look at (inclusive): the letters after it came later and are left
-- 'ids':    ARGV[5..] canonical IDs (ms-seq), in stream order, each once
-- Returns { replayed, progress, { kept IDs }, { IDs not found } }; progress is, for
-- 'range', the last ID looked at ('' when none was left up to the bound), for 'ids', how
-- many of the IDs given were looked at, in order (at least 1: the first always is).

-- spread(t, i, j): see spread.lua, prepended to this script.

local meta, limit, budget = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local replayed, kept, not_found = 0, {}, {}
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
  if #args == 0 then
    kept[#kept + 1] = id
    return true
  end
  redis.call('XADD', KEYS[2], '*', spread(args, 1, #args))
  redis.call('XDEL', KEYS[1], id)
  written = written + #args / 2
  replayed = replayed + 1
  return true
end

if ARGV[4] == 'range' then
  local start = ARGV[5] == '-' and '-' or '(' .. ARGV[5]
  local last = ''
  for _, entry in ipairs(redis.call('XRANGE', KEYS[1], start, ARGV[6], 'COUNT', limit)) do
    if not replay(entry) then
      break
    end
    last = entry[1]
  end
  return { replayed, last, kept, not_found }
end

local looked = 0
for i = 5, math.min(#ARGV, 4 + limit) do
  local found = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
  if #found == 0 then
    not_found[#not_found + 1] = ARGV[i]
  elseif not replay(found[1]) then
    break
  end
  looked = looked + 1
end
return { replayed, looked, kept, not_found }
