-- Sluice guarded commit: for each entry, append its outputs and acknowledge it, but only
-- if the entry is still pending for this group AND owned by this consumer. An entry that
-- was already committed (a retried commit after a lost reply) or claimed by another
-- consumer writes nothing and is reported as 0.
--
-- KEYS[1]      the input stream
-- KEYS[2..]    every stream an output goes to
-- ARGV         group, consumer, entry count, then per entry:
--                id, output count, then per output: key index, field count, f1, v1, ...
-- Returns one integer per entry: 1 committed, 0 not owned.
--
-- All checks run before the first write, so a wrongly typed target key fails the whole
-- batch with an error instead of leaving it half written.

local group, consumer = ARGV[1], ARGV[2]
local count = tonumber(ARGV[3])

for i = 2, #KEYS do
  local kind = redis.call('TYPE', KEYS[i])['ok']
  if kind ~= 'stream' and kind ~= 'none' then
    return redis.error_reply('WRONGTYPE output key ' .. KEYS[i] .. ' holds a ' .. kind .. ', not a stream')
  end
end

local owned = {}
local pos = 4
local entries = {}
for e = 1, count do
  local id, outputs = ARGV[pos], tonumber(ARGV[pos + 1])
  local first = pos + 2
  pos = first
  for _ = 1, outputs do
    pos = pos + 2 + 2 * tonumber(ARGV[pos + 1])
  end
  local pending = redis.call('XPENDING', KEYS[1], group, id, id, 1, consumer)
  entries[e] = { id, outputs, first }
  owned[e] = #pending == 1
end

local result = {}
for e = 1, count do
  if owned[e] then
    local id, outputs, p = entries[e][1], entries[e][2], entries[e][3]
    for _ = 1, outputs do
      local key, fields = KEYS[tonumber(ARGV[p])], tonumber(ARGV[p + 1])
      local args = { 'XADD', key, '*' }
      for f = 1, 2 * fields do
        args[3 + f] = ARGV[p + 1 + f]
      end
      redis.call(unpack(args))
      p = p + 2 + 2 * fields
    end
    redis.call('XACK', KEYS[1], group, id)
    result[e] = 1
  else
    result[e] = 0
  end
end
return result
