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
-- written and it is reported as 3 (gone).
--
-- KEYS[1]      the input stream
-- KEYS[2..]    every stream an output goes to
-- ARGV         group, consumer, entry count, lowest ID, highest ID, adopt (0/1), then
--              per entry:
--                id, output count, then per output: key index, field count, f1, v1, ...
-- Returns one integer per entry: 1 committed, 0 owned by another consumer, 2 adopted,
-- 3 gone.
--
-- All checks run before the first write, so a wrongly typed target key fails the whole
-- batch with an error instead of leaving it half written.
--
-- Cost: ownership is one XPENDING over the batch's ID range (filtered to this consumer)
-- rather than one per entry, and the batch is acknowledged by one XACK: per entry, the
-- script does little more than its XADDs.

-- spread(t, i, j) returns t[i..j] as separate values, like unpack, for any width.
-- Lua's unpack stops near 8,000 values (LUAI_MAXCSTACK), which must not decide how wide
-- an entry may be: above 4,000 values, each call level returns 128 of them literally and
-- recurses for the rest. Each level copies the values below it, so the cost grows with
-- the square of the width: Sluice writes entries of up to 100,000 fields this way
-- (MAX_FIELDS_PER_OUTPUT: ~0.2 s more than a plain XADD); Lua's limit of nested calls
-- (~16,000 here) would allow about 2 million values.
local function spread(t, i, j)
  if j - i < 4000 then
    return unpack(t, i, j)
  end
  return
    t[i + 0], t[i + 1], t[i + 2], t[i + 3], t[i + 4], t[i + 5], t[i + 6], t[i + 7],
    t[i + 8], t[i + 9], t[i + 10], t[i + 11], t[i + 12], t[i + 13], t[i + 14], t[i + 15],
    t[i + 16], t[i + 17], t[i + 18], t[i + 19], t[i + 20], t[i + 21], t[i + 22], t[i + 23],
    t[i + 24], t[i + 25], t[i + 26], t[i + 27], t[i + 28], t[i + 29], t[i + 30], t[i + 31],
    t[i + 32], t[i + 33], t[i + 34], t[i + 35], t[i + 36], t[i + 37], t[i + 38], t[i + 39],
    t[i + 40], t[i + 41], t[i + 42], t[i + 43], t[i + 44], t[i + 45], t[i + 46], t[i + 47],
    t[i + 48], t[i + 49], t[i + 50], t[i + 51], t[i + 52], t[i + 53], t[i + 54], t[i + 55],
    t[i + 56], t[i + 57], t[i + 58], t[i + 59], t[i + 60], t[i + 61], t[i + 62], t[i + 63],
    t[i + 64], t[i + 65], t[i + 66], t[i + 67], t[i + 68], t[i + 69], t[i + 70], t[i + 71],
    t[i + 72], t[i + 73], t[i + 74], t[i + 75], t[i + 76], t[i + 77], t[i + 78], t[i + 79],
    t[i + 80], t[i + 81], t[i + 82], t[i + 83], t[i + 84], t[i + 85], t[i + 86], t[i + 87],
    t[i + 88], t[i + 89], t[i + 90], t[i + 91], t[i + 92], t[i + 93], t[i + 94], t[i + 95],
    t[i + 96], t[i + 97], t[i + 98], t[i + 99], t[i + 100], t[i + 101], t[i + 102], t[i + 103],
    t[i + 104], t[i + 105], t[i + 106], t[i + 107], t[i + 108], t[i + 109], t[i + 110], t[i + 111],
    t[i + 112], t[i + 113], t[i + 114], t[i + 115], t[i + 116], t[i + 117], t[i + 118], t[i + 119],
    t[i + 120], t[i + 121], t[i + 122], t[i + 123], t[i + 124], t[i + 125], t[i + 126], t[i + 127],
    spread(t, i + 128, j)
end

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
