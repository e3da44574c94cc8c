-- The list indexes of a batch of tickets, in one call: the creation index (ZADD NX), the
-- members leaving an index (ZREM), the members joining or moving in one (ZADD).
-- KEYS[1] = hub:{tickets}:ix:all, the creation index (every key written shares its tag)
-- ARGV[1] = JSON {"nx": [score, id, ...], "rem": [[key, id, ...], ...],
--                 "add": [[key, score, id, ...], ...]} (scores as text)
local b = cjson.decode(ARGV[1])
local function each(key, flag, list, first)
  local i, n = first, #list
  while i <= n do
    local last = math.min(n, i + 999)  -- 1000 words at a time: pairs stay whole
    if flag then
      redis.call(flag, key, unpack(list, i, last))
    else
      redis.call('ZADD', key, 'NX', unpack(list, i, last))
    end
    i = last + 1
  end
end
each(KEYS[1], nil, b.nx, 1)
for _, row in ipairs(b.rem) do each(row[1], 'ZREM', row, 2) end
for _, row in ipairs(b.add) do each(row[1], 'ZADD', row, 2) end
return 1
