-- Sluice guarded commit: for each entry, append its outputs and acknowledge it, but only
-- if the entry is still pending for this group AND owned by this consumer. An entry
-- claimed by another consumer writes nothing and is reported as NOT_OWNED.
--
-- An entry pending for no consumer at all was either committed already (a commit retried
-- after its reply was lost) or removed from the pending entries list under its owner (an
-- operator ran XGROUP DELCONSUMER, XACK, or destroyed the group). The caller knows which
-- can be the case: with `adopt` set (no earlier try of this commit may have gone
-- through, and the entry's entry lease never lapsed, so no other consumer can have taken it),
-- its outputs are written and it is reported as ADOPTED; otherwise nothing is
-- written and it is reported as GONE. An entry past the group's last-delivered ID
-- was never delivered as far as this server knows (a failover lost the delivery with
-- the old primary): it will be delivered again, so nothing is written and it is reported
-- as UNDELIVERED instead of being adopted.
--
-- Handler state: an entry may carry reads (what it saw of keys) and writes. Its writes
-- are applied, with its outputs and acknowledgement, only if every read still holds at
-- that point of the script (after the batch's earlier entries); else nothing of it is
-- written and it is reported as CONFLICT (handled again). A hash write to a key that
-- holds another type writes nothing of the entry and reports STATE_REFUSED.
--
-- KEYS[1]      the input stream
-- KEYS[2..]    every stream an output goes to, then every state key
-- ARGV         group, consumer, entry count, lowest ID, highest ID, adopt (0/1), number
--              of output streams in KEYS, the index in KEYS of the fence's lease key
--              (a partition lease or the consumer's name lease; 0: none) and the value this consumer holds it with, then per entry:
--                id, output count, then per output: key index, field count, f1, v1, ...
--                read count, then per read: kind, key index, then
--                  READ_GET:     present (0/1) [, value]
--                  READ_HGET:    field, present [, value]
--                  READ_HGETALL: field count, f1, v1, ...
--                write count, then per write: op, key index, then
--                  WRITE_SET: value;  WRITE_DEL: nothing;  WRITE_HSET: field count, f1,
--                  v1, ... (an entry's consecutive fields of one hash, one HSET);
--                  WRITE_INCRBY: delta (the key must then hold an integer, or nothing)
-- Returns one status per entry: COMMITTED, NOT_OWNED (owned by another consumer),
-- ADOPTED, GONE, UNDELIVERED, CONFLICT or STATE_REFUSED.
--
-- The constants (opcodes and statuses) are not defined here: the script is loaded with a
-- preamble generated from the Rust enums of broker/commit/protocol.rs.
--
-- The output streams' types are checked before the first write, so a wrongly typed output
-- stream fails the whole batch with an error instead of leaving it half written; an
-- entry's state writes are checked before any of them is applied (STATE_REFUSED). The
-- arguments come from the encoder shipped with this script (broker/commit/encode.rs):
-- an opcode it does not know is a bug, answered with an error where it is found, after
-- the entries before it were written but not acknowledged (the price of parsing the
-- batch once, not twice: ~0.5 µs per entry). The script runs by the SHA of this text,
-- loaded by the binary whose encoder writes its arguments, so the two cannot disagree.
--
-- Cost: ownership is one XPENDING over the batch's ID range (filtered to this consumer)
-- rather than one per entry, the batch is acknowledged by one XACK, and an entry without
-- state reads or writes costs its XADDs and a few table lookups (docs/decisions.md,
-- "Where an entry's microseconds go").

-- spread(t, i, j): see spread.lua, prepended to this script (after the constants).

local call = redis.call
local tonumber, unpack = tonumber, unpack

-- Counts as ARGV holds them, for the small ones: a table lookup instead of tonumber's
-- strtod (the counts of every entry are read in the loop below).
local small = {}
for i = 0, 64 do
  small[tostring(i)] = i
end

local group, consumer = ARGV[1], ARGV[2]
local count = tonumber(ARGV[3])
local low, high = ARGV[4], ARGV[5]
local adopt = ARGV[6] == '1'
local output_keys = tonumber(ARGV[7])
local lease = tonumber(ARGV[8])

-- The fence (a partition lease of ordering = "per-key", or the consumer's name lease):
-- unless its key still holds this daemon's value (its name and fencing token), the lease
-- lapsed or another daemon took it, and this commit is fenced off: nothing is written, and every entry is
-- reported as owned by another consumer.
if lease > 0 and call('GET', KEYS[lease]) ~= ARGV[9] then
  local fenced = {}
  for e = 1, count do
    fenced[e] = NOT_OWNED
  end
  return fenced
end

for i = 2, 1 + output_keys do
  local kind = call('TYPE', KEYS[i])['ok']
  if kind ~= 'stream' and kind ~= 'none' then
    return redis.error_reply('WRONGTYPE output key ' .. KEYS[i] .. ' holds a ' .. kind .. ', not a stream')
  end
end

-- This consumer's pending entries in the batch's range. The range may also hold other
-- entries of ours (failed ones waiting for a retry); if the page comes back full it may
-- have been cut short, and entries not seen on it are looked up one by one.
local page = 2 * count + 16
local mine = {}
local pending = call('XPENDING', KEYS[1], group, low, high, page, consumer)
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
    for _, g in ipairs(call('XINFO', 'GROUPS', KEYS[1])) do
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

-- Whether the reads at ARGV[at..] (n of them) still hold.
local function holds(at, n)
  local p = at
  for _ = 1, n do
    local kind, key = ARGV[p], KEYS[tonumber(ARGV[p + 1])]
    local t = call('TYPE', key)['ok']
    if kind == READ_GET then
      if ARGV[p + 2] == '1' then
        if t ~= 'string' or call('GET', key) ~= ARGV[p + 3] then
          return false
        end
        p = p + 4
      else
        if t ~= 'none' then
          return false
        end
        p = p + 3
      end
    elseif kind == READ_HGET then
      if t ~= 'hash' and t ~= 'none' then
        return false
      end
      local value = call('HGET', key, ARGV[p + 2])
      if ARGV[p + 3] == '1' then
        if value ~= ARGV[p + 4] then
          return false
        end
        p = p + 5
      else
        if value then
          return false
        end
        p = p + 4
      end
    elseif kind == READ_HGETALL then
      if t ~= 'hash' and t ~= 'none' then
        return false
      end
      local fields = tonumber(ARGV[p + 2])
      if call('HLEN', key) ~= fields then
        return false
      end
      for i = 1, fields do
        if call('HGET', key, ARGV[p + 1 + 2 * i]) ~= ARGV[p + 2 + 2 * i] then
          return false
        end
      end
      p = p + 3 + 2 * fields
    end
  end
  return true
end

-- The integer Redis's INCRBY reads from a string (its string2ll): digits with an
-- optional '-', no leading zero, not "-0", at most 20 characters; nil if it is none.
-- A double holds it closely enough for the limit below.
local function redis_integer(value)
  if value == '0' then
    return 0
  end
  if #value > 20 or not string.match(value, '^%-?[1-9]%d*$') then
    return nil
  end
  return tonumber(value)
end

-- Sums at or past this are refused: 2^63 less a margin for doubles' rounding at this
-- size (INCRBY itself fails past 2^63 - 1).
local LIMIT = 9223372036854771712

-- What `key` holds, for `writable` (kinds[key]: 'int' with values[key], 'str', 'hash',
-- 'none' or another type), looked up once per entry and key.
local function kind(kinds, values, key, for_hash)
  if kinds[key] == nil then
    if for_hash then
      kinds[key] = call('TYPE', key)['ok']
    else
      -- One call: GET answers nil for no key, an error (not raised) for other types.
      local value = redis.pcall('GET', key)
      if type(value) == 'table' then
        kinds[key] = 'other'
      elseif not value then
        kinds[key] = 'none'
      else
        local number = redis_integer(value)
        if number then
          kinds[key], values[key] = 'int', number
        else
          kinds[key] = 'str'
        end
      end
    end
  end
  return kinds[key]
end

-- The position in ARGV of the write after the one at p.
local function next_write(p)
  local op = ARGV[p]
  if op == WRITE_HSET then
    return p + 3 + 2 * tonumber(ARGV[p + 2])
  elseif op == WRITE_DEL then
    return p + 2
  end
  return p + 3
end

-- Whether the writes at ARGV[at..] can all be applied, checked against what each key
-- holds then, the entry's own earlier writes included: a hash write needs a hash (or
-- nothing), an add an integer (or nothing) and a sum within 64 bits. A command that
-- failed later would stop the script after earlier writes, which a script cannot undo.
--
-- The entry's first write is not checked when it is an HSET (or any single write but an
-- INCRBY): `apply` runs it first, under pcall, and a refused write changes nothing, so
-- nothing of the entry is written then. An INCRBY is always checked here, so that a sum
-- near 2^63 is judged by the same limit wherever it stands in the entry (and by the
-- tools, state::MemoryStore, alike).
local function writable(at, n)
  if n == 1 and ARGV[at] ~= WRITE_INCRBY then
    return true
  end
  local p, kinds, values = at, {}, {}
  local unchecked = ARGV[at] == WRITE_HSET
  for i = 1, n do
    local op, key = ARGV[p], KEYS[tonumber(ARGV[p + 1])]
    if i == 1 and unchecked then
      if op == WRITE_HSET then
        kinds[key] = 'hash'
      end
    elseif op == WRITE_SET then
      local number = redis_integer(ARGV[p + 2])
      if number then
        kinds[key], values[key] = 'int', number
      else
        kinds[key] = 'str'
      end
    elseif op == WRITE_DEL then
      kinds[key] = 'none'
    elseif op == WRITE_INCRBY then
      local k = kind(kinds, values, key, false)
      local current = 0
      if k == 'int' then
        current = values[key]
      elseif k ~= 'none' then
        return false
      end
      local sum = current + tonumber(ARGV[p + 2])
      if math.abs(sum) >= LIMIT then
        return false
      end
      kinds[key], values[key] = 'int', sum
    elseif op == WRITE_HSET then
      local k = kind(kinds, values, key, true)
      if k ~= 'hash' and k ~= 'none' then
        return false
      end
      kinds[key] = 'hash'
    end
    p = next_write(p)
  end
  return true
end

-- Applies the checked writes. Each runs under pcall: the first, if refused, leaves
-- nothing written (a write that `writable` did not check); should a later one still
-- fail, the script stops writing this entry and reports it refused instead of raising
-- (which would leave the writes before it and have the whole commit sent again).
local function apply(at, n)
  local p = at
  for i = 1, n do
    local op, key = ARGV[p], KEYS[tonumber(ARGV[p + 1])]
    local reply
    if op == WRITE_SET then
      reply = redis.pcall('SET', key, ARGV[p + 2])
      p = p + 3
    elseif op == WRITE_DEL then
      reply = redis.pcall('DEL', key)
      p = p + 2
    elseif op == WRITE_INCRBY then
      reply = redis.pcall('INCRBY', key, ARGV[p + 2])
      p = p + 3
    elseif op == WRITE_HSET then
      local fields = tonumber(ARGV[p + 2])
      reply = redis.pcall('HSET', key, unpack(ARGV, p + 3, p + 2 + 2 * fields))
      p = p + 3 + 2 * fields
    end
    if type(reply) == 'table' and reply.err then
      if i > 1 then
        redis.log(redis.LOG_WARNING, 'sluice: a checked state write failed: ' .. reply.err)
      end
      return false
    end
  end
  return true
end

-- One pass over the entries, in order: each is parsed, its ownership decided, its reads
-- checked and its writes and outputs applied before the next. Whether an entry is ours
-- does not depend on the writes of the entries before it (they touch no consumer group:
-- the acknowledgements come last), and a state check sees the writes before it, as the
-- handler did.
local result = {}
local acks = {}
local pos = 10
for e = 1, count do
  local id, outputs = ARGV[pos], small[ARGV[pos + 1]] or tonumber(ARGV[pos + 1])
  local first = pos + 2
  pos = first
  for _ = 1, outputs do
    local n = ARGV[pos + 1]
    pos = pos + 2 + 2 * (small[n] or tonumber(n))
  end
  local reads = small[ARGV[pos]] or tonumber(ARGV[pos])
  pos = pos + 1
  local reads_at = pos
  for _ = 1, reads do
    local kind = ARGV[pos]
    if kind == READ_GET then
      pos = pos + 3 + (ARGV[pos + 2] == '1' and 1 or 0)
    elseif kind == READ_HGET then
      pos = pos + 4 + (ARGV[pos + 3] == '1' and 1 or 0)
    elseif kind == READ_HGETALL then
      pos = pos + 3 + 2 * tonumber(ARGV[pos + 2])
    else
      return redis.error_reply('ERR sluice commit: unknown read kind ' .. tostring(kind))
    end
  end
  local writes = small[ARGV[pos]] or tonumber(ARGV[pos])
  pos = pos + 1
  local writes_at = pos
  for _ = 1, writes do
    local op = ARGV[pos]
    if op == WRITE_SET or op == WRITE_INCRBY then
      pos = pos + 3
    elseif op == WRITE_DEL then
      pos = pos + 2
    elseif op == WRITE_HSET then
      pos = pos + 3 + 2 * tonumber(ARGV[pos + 2])
    else
      return redis.error_reply('ERR sluice commit: unknown write op ' .. tostring(op))
    end
  end
  local status
  if mine[id] or (not complete and #call('XPENDING', KEYS[1], group, id, id, 1, consumer) == 1) then
    status = COMMITTED
  elseif #call('XPENDING', KEYS[1], group, id, id, 1) == 1 then
    status = NOT_OWNED
  elseif not delivered(id) then
    status = UNDELIVERED
  elseif adopt then
    status = ADOPTED
  else
    status = GONE
  end
  if status == COMMITTED or status == ADOPTED then
    if reads > 0 and not holds(reads_at, reads) then
      status = CONFLICT
    elseif writes > 0 and not (writable(writes_at, writes) and apply(writes_at, writes)) then
      status = STATE_REFUSED
    end
  end
  if status == COMMITTED or status == ADOPTED then
    local p = first
    for _ = 1, outputs do
      local key, n = KEYS[small[ARGV[p]] or tonumber(ARGV[p])], ARGV[p + 1]
      local last = p + 1 + 2 * (small[n] or tonumber(n))
      if last - p < 4000 then
        call('XADD', key, '*', unpack(ARGV, p + 2, last))
      else
        call('XADD', key, '*', spread(ARGV, p + 2, last))
      end
      p = last + 1
    end
    if status == COMMITTED then
      acks[#acks + 1] = id
    end
  end
  result[e] = status
end
for first = 1, #acks, 1000 do
  call('XACK', KEYS[1], group, unpack(acks, first, math.min(first + 999, #acks)))
end
return result
