-- KEYS[1] = lease key   ARGV: 1 owner, 2 ttl ms
-- Take the lease if free, extend it if ours; return 1 when we hold it.
local cur = redis.call('GET', KEYS[1])
if not cur or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
  return 1
end
return 0
