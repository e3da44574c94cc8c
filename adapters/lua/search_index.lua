-- Write a batch's search terms: each message's ticket gets the message's score on each of
-- its term keys with ZADD GT, so indexing again (a redelivery, a replay) changes nothing and
-- an older message never lowers a score. One call per batch, one ZADD per key (the pairs of
-- every message naming it; ZADD applies GT pair by pair, in order).
-- KEYS[1] = hub:{search} (every key written shares its tag)
-- ARGV[1] = JSON [[ticket id, score, key, key, ...], ...] (one row per message)
local rows = cjson.decode(ARGV[1])
local pairs_of, order = {}, {}
for _, row in ipairs(rows) do
  local tid, score = row[1], row[2]
  for i = 3, #row do
    local k = row[i]
    local list = pairs_of[k]
    if not list then
      list = {}
      pairs_of[k] = list
      order[#order + 1] = k
    end
    list[#list + 1] = score
    list[#list + 1] = tid
  end
end
for _, k in ipairs(order) do
  local list = pairs_of[k]
  local i, n = 1, #list
  while i <= n do
    local last = math.min(n, i + 999)  -- 500 pairs at a time
    redis.call('ZADD', k, 'GT', unpack(list, i, last))
    i = last + 1
  end
end
return #rows
