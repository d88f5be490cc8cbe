-- Sluice lease renewal: resets the idle time of entries still owned by this consumer
-- (XCLAIM ... JUSTID keeps the delivery count), so that a slow handler's entries are
-- not reclaimed by another consumer. An entry another consumer has taken is left alone:
-- a plain XCLAIM would steal it back.
--
-- KEYS[1]   the input stream
-- KEYS[2]   with a fence: the lease key this consumer works under (its name's, or its
--           partition's)
-- ARGV      group, consumer, the value the lease key must hold ('' without a fence),
--           id...
-- Returns the IDs renewed (those still owned by this consumer); none once the lease is
-- not this daemon's: a daemon that lost its name renews nothing in it.

local group, consumer = ARGV[1], ARGV[2]
local renewed = {}
if #KEYS > 1 and redis.call('GET', KEYS[2]) ~= ARGV[3] then
  return renewed
end
for i = 4, #ARGV do
  local id = ARGV[i]
  local pending = redis.call('XPENDING', KEYS[1], group, id, id, 1, consumer)
  if #pending == 1 then
    redis.call('XCLAIM', KEYS[1], group, consumer, 0, id, 'JUSTID')
    renewed[#renewed + 1] = id
  end
end
return renewed
