-- Sluice guarded commit: for each entry, append its outputs and acknowledge it, but only
-- if the entry is still pending for this group AND owned by this consumer. An entry
-- claimed by another consumer writes nothing and is reported as 0.
--
-- An entry pending for no consumer at all was either committed already (a commit retried
-- after its reply was lost) or removed from the pending entries list under its owner (an
-- operator ran XGROUP DELCONSUMER, XACK, or destroyed the group). The caller knows which
-- can be the case: with `adopt` set (no earlier try of this commit may have gone
-- through, and the entry's lease never lapsed, so no other consumer can have taken it),
-- its outputs are written and it is reported as 2 (adopted); otherwise nothing is
-- written and it is reported as 3 (gone). An entry past the group's last-delivered ID
-- was never delivered as far as this server knows (a failover lost the delivery with
-- the old primary): it will be delivered again, so nothing is written and it is reported
-- as 4 (undelivered) instead of being adopted.
--
-- KEYS[1]      the input stream
-- KEYS[2..]    every stream an output goes to
-- ARGV         group, consumer, entry count, lowest ID, highest ID, adopt (0/1), then
--              per entry:
--                id, output count, then per output: key index, field count, f1, v1, ...
-- Returns one integer per entry: 1 committed, 0 owned by another consumer, 2 adopted,
-- 3 gone, 4 undelivered.
--
-- All checks run before the first write, so a wrongly typed target key fails the whole
-- batch with an error instead of leaving it half written.
--
-- Cost: ownership is one XPENDING over the batch's ID range (filtered to this consumer)
-- rather than one per entry, and the batch is acknowledged by one XACK: per entry, the
-- script does little more than its XADDs.

-- spread(t, i, j): see spread.lua, prepended to this script.

local group, consumer = ARGV[1], ARGV[2]
local count = tonumber(ARGV[3])
local low, high = ARGV[4], ARGV[5]
local adopt = ARGV[6] == '1'

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

-- Whether stream ID a comes after b. Both are canonical "ms-seq" decimals (as Redis
-- returns them), compared as numbers by length first: Lua's doubles would round them.
local function after(a, b)
  local a_ms, a_seq = string.match(a, '^(%d+)-(%d+)$')
  local b_ms, b_seq = string.match(b, '^(%d+)-(%d+)$')
  if not a_ms or not b_ms then
    return false
  end
  local function greater(x, y)
    if #x ~= #y then
      return #x > #y
    end
    return x > y
  end
  if a_ms ~= b_ms then
    return greater(a_ms, b_ms)
  end
  return greater(a_seq, b_seq)
end

-- The group's last-delivered ID on this server, looked up once, when needed.
local last_delivered
local function delivered(id)
  if last_delivered == nil then
    last_delivered = '0-0'
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
      local name, last
      for k = 1, #g, 2 do
        if g[k] == 'name' then
          name = g[k + 1]
        elseif g[k] == 'last-delivered-id' then
          last = g[k + 1]
        end
      end
      if name == group and last then
        last_delivered = last
      end
    end
  end
  return not after(id, last_delivered)
end

local owned = {}
local pos = 7
local entries = {}
for e = 1, count do
  local id, outputs = ARGV[pos], tonumber(ARGV[pos + 1])
  local first = pos + 2
  pos = first
  for _ = 1, outputs do
    pos = pos + 2 + 2 * tonumber(ARGV[pos + 1])
  end
  entries[e] = { id, outputs, first }
  if mine[id] or (not complete and #redis.call('XPENDING', KEYS[1], group, id, id, 1, consumer) == 1) then
    owned[e] = 1
  elseif #redis.call('XPENDING', KEYS[1], group, id, id, 1) == 1 then
    owned[e] = 0
  elseif not delivered(id) then
    owned[e] = 4
  elseif adopt then
    owned[e] = 2
  else
    owned[e] = 3
  end
end

local result = {}
local acks = {}
for e = 1, count do
  if owned[e] == 1 or owned[e] == 2 then
    local id, outputs, p = entries[e][1], entries[e][2], entries[e][3]
    for _ = 1, outputs do
      local key, fields = KEYS[tonumber(ARGV[p])], tonumber(ARGV[p + 1])
      redis.call('XADD', key, '*', spread(ARGV, p + 2, p + 1 + 2 * fields))
      p = p + 2 + 2 * fields
    end
    if owned[e] == 1 then
      acks[#acks + 1] = id
    end
  end
  result[e] = owned[e]
end
-- One XACK per thousand IDs keeps each call well inside Lua's unpack limit.
for first = 1, #acks, 1000 do
  redis.call('XACK', KEYS[1], group, unpack(acks, first, math.min(first + 999, #acks)))
end
return result
