-- Sluice dead-letter replay: moves dead letters back to the input stream with their
-- original fields (the leading `sluice.*` metadata fields dropped), and deletes them
-- from the dead-letter stream, in one atomic step per call.
--
-- KEYS[1]   the dead-letter stream
-- KEYS[2]   the input stream
-- ARGV[1]   how many metadata fields lead each dead letter
-- ARGV[2]   how many to replay at most when no ids are given
-- ARGV[3..] the ids to replay (none: the oldest, up to ARGV[2])
-- Returns the number replayed.

local meta, limit = tonumber(ARGV[1]), tonumber(ARGV[2])

local function replay(entry)
  local id, fields = entry[1], entry[2]
  local args = { 'XADD', KEYS[2], '*' }
  for i = 1, #fields, 2 do
    local pair = (i + 1) / 2
    if not (pair <= meta and string.sub(fields[i], 1, 7) == 'sluice.') then
      args[#args + 1] = fields[i]
      args[#args + 1] = fields[i + 1]
    end
  end
  if #args > 3 then
    redis.call(unpack(args))
  end
  redis.call('XDEL', KEYS[1], id)
  return 1
end

local replayed = 0
if #ARGV == 2 then
  for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', limit)) do
    replayed = replayed + replay(entry)
  end
else
  for i = 3, #ARGV do
    local found = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
    if #found == 1 then
      replayed = replayed + replay(found[1])
    end
  end
end
return replayed
