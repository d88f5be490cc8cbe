-- Prepended to the scripts that write entries: commit/mod.rs, cross_slot.rs and
-- dead/replay.rs build commit.lua, cross_slot.lua and dead/replay.lua as spread.lua then
-- the script (the commit: after its protocol constants). Comments above a script's
-- code still lead it.
--
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
