-- Sluice dead-letter page: the entries of a stream after an ID, read one at a time and
-- cut to a byte budget, so that a page of huge letters costs neither Redis nor the
-- daemon more than the budget (Redis has no command that reads part of a field).
--
-- KEYS[1]  the stream
-- ARGV[1]  where to start: '-', or '(' followed by the ID to start after
-- ARGV[2]  how many entries at most
-- ARGV[3]  the most bytes of one field name or value (longer ones are cut)
-- ARGV[4]  the most bytes of the page (names and values, after cutting)
-- ARGV[5]  '1': the first entry is returned whatever its size, cut to fit, so that
--          paging always moves on; '0': only entries that fit whole (a page that
--          continues another one)
-- Returns { more, entry... } with entry = { id, cut, { name, value, ... } }: `cut` is
-- 1 when a name or value of the entry was cut or fields were left out; `more` is 1
-- when the page stopped at the budget with entries left.

local start, count, cut_first = ARGV[1], tonumber(ARGV[2]), ARGV[5] == '1'
local cap, budget = tonumber(ARGV[3]), tonumber(ARGV[4])
local page = { 0 }
local used = 0

-- The entry `row` within `room` bytes, or nil when it does not fit whole and `first`
-- is false.
local function fit(row, room, first)
  local fields, kept, cut = row[2], {}, 0
  for i = 1, #fields, 2 do
    local name, value = fields[i], fields[i + 1]
    if #name > cap then name = string.sub(name, 1, cap); cut = 1 end
    if #value > cap then value = string.sub(value, 1, cap); cut = 1 end
    if #name + #value > room then
      if not first then return nil end
      name = string.sub(name, 1, room)
      value = string.sub(value, 1, room - #name)
      kept[#kept + 1] = name
      kept[#kept + 1] = value
      return { row[1], 1, kept }, budget
    end
    room = room - #name - #value
    kept[#kept + 1] = name
    kept[#kept + 1] = value
  end
  return { row[1], cut, kept }, budget - room
end

for n = 1, count do
  local row = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', 1)[1]
  if not row then break end
  local entry, size = fit(row, budget - used, n == 1 and cut_first)
  if not entry then
    page[1] = 1
    break
  end
  page[#page + 1] = entry
  used = size
  start = '(' .. row[1]
end
return page
