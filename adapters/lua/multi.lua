-- Several commands as one atomic step, in order: what MULTI/EXEC does, but also on a Redis
-- Cluster (redis-py's cluster pipeline runs MULTI/EXEC badly: a thread and an event loop per
-- command). KEYS: every key the commands name (one hash tag on a cluster). ARGV: for each
-- command, its word count, then its words. Returns each command's reply, in order.
local out, i = {}, 1
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  out[#out + 1] = redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return out
