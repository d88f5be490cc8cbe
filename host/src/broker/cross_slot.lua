-- Sluice cross-slot outputs (`cross_slot = true`, Redis Cluster only): outputs whose
-- stream is in another hash slot than the input cannot be written by the input's guarded
-- commit (a script touches one slot). They are written first, by this script, in their
-- own slot, at most once per input entry: each entry has a marker key in this slot, set
-- with NX and an expiry; an entry whose marker is already there (this write repeated: a
-- reply was lost, the daemon died before its guarded commit, another consumer took the
-- entry over) writes nothing. The guarded commit then acknowledges the input.
--
-- KEYS[1..m]   one marker per entry (m = ARGV[2]), then the output streams
-- ARGV         marker expiry (ms), entry count m, number of output streams, then per
--              entry: output count, then per output: key index, field count, f1, v1, ...
-- Returns the number of entries whose outputs were written now (not before).
--
-- Every output key is checked to be a stream (or absent) before the first write.

-- spread(t, i, j): see spread.lua, prepended to this script.

local ttl = ARGV[1]
local count = tonumber(ARGV[2])
local streams = tonumber(ARGV[3])

for i = count + 1, count + streams do
  local kind = redis.call('TYPE', KEYS[i])['ok']
  if kind ~= 'stream' and kind ~= 'none' then
    return redis.error_reply('WRONGTYPE output key ' .. KEYS[i] .. ' holds a ' .. kind .. ', not a stream')
  end
end

local written = 0
local p = 4
for e = 1, count do
  local fresh = redis.call('SET', KEYS[e], '1', 'NX', 'PX', ttl)
  if fresh then
    written = written + 1
  end
  local outputs = tonumber(ARGV[p])
  p = p + 1
  for _ = 1, outputs do
    local key = KEYS[tonumber(ARGV[p])]
    local fields = tonumber(ARGV[p + 1])
    if fresh then
      redis.call('XADD', key, '*', spread(ARGV, p + 2, p + 1 + 2 * fields))
    end
    p = p + 2 + 2 * fields
  end
end
return written
