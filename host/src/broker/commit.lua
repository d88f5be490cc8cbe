-- Sluice guarded commit: for each entry, append its outputs and acknowledge it, but only
-- if the entry is still pending for this group AND owned by this consumer. An entry that
-- was already committed (a retried commit after a lost reply) or claimed by another
-- consumer writes nothing and is reported as 0.
--
-- KEYS[1]      the input stream
-- KEYS[2..]    every stream an output goes to
-- ARGV         group, consumer, entry count, lowest ID, highest ID, then per entry:
--                id, output count, then per output: key index, field count, f1, v1, ...
-- Returns one integer per entry: 1 committed, 0 not owned.
--
-- All checks run before the first write, so a wrongly typed target key fails the whole
-- batch with an error instead of leaving it half written.
--
-- Cost: ownership is one XPENDING over the batch's ID range (filtered to this consumer)
-- rather than one per entry, and the batch is acknowledged by one XACK: per entry, the
-- script does little more than its XADDs.

local group, consumer = ARGV[1], ARGV[2]
local count = tonumber(ARGV[3])
local low, high = ARGV[4], ARGV[5]

for i = 2, #KEYS do
  local kind = redis.call('TYPE', KEYS[i])['ok']
  if kind ~= 'stream' and kind ~= 'none' then
    return redis.error_reply('WRONGTYPE output key ' .. KEYS[i] .. ' holds a ' .. kind .. ', not a stream')
  end
end

-- This consumer's pending entries in the batch's range. The range may also hold other
-- entries of ours (failed ones waiting for a retry); if the page comes back full it may
-- have been cut short, and entries not seen on it are looked up one by one.
local page = 2 * count + 16
local mine = {}
local pending = redis.call('XPENDING', KEYS[1], group, low, high, page, consumer)
for _, p in ipairs(pending) do
  mine[p[1]] = true
end
local complete = #pending < page

local owned = {}
local pos = 6
local entries = {}
for e = 1, count do
  local id, outputs = ARGV[pos], tonumber(ARGV[pos + 1])
  local first = pos + 2
  pos = first
  for _ = 1, outputs do
    pos = pos + 2 + 2 * tonumber(ARGV[pos + 1])
  end
  entries[e] = { id, outputs, first }
  if mine[id] then
    owned[e] = true
  elseif complete then
    owned[e] = false
  else
    owned[e] = #redis.call('XPENDING', KEYS[1], group, id, id, 1, consumer) == 1
  end
end

local result = {}
local acks = {}
for e = 1, count do
  if owned[e] then
    local id, outputs, p = entries[e][1], entries[e][2], entries[e][3]
    for _ = 1, outputs do
      local key, fields = KEYS[tonumber(ARGV[p])], tonumber(ARGV[p + 1])
      redis.call('XADD', key, '*', unpack(ARGV, p + 2, p + 1 + 2 * fields))
      p = p + 2 + 2 * fields
    end
    acks[#acks + 1] = id
    result[e] = 1
  else
    result[e] = 0
  end
end
-- One XACK per thousand IDs keeps each call well inside Lua's unpack limit.
for first = 1, #acks, 1000 do
  redis.call('XACK', KEYS[1], group, unpack(acks, first, math.min(first + 999, #acks)))
end
return result
