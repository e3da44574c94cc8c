-- KEYS[1] = delayed zset, KEYS[2] = outbox stream (same hash tag)  ARGV[1] = now ms, ARGV[2] = max
-- Retries wait in a zset until due, then move to the stream atomically (never lost, never twice).
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'r', member)
  redis.call('ZREM', KEYS[1], member)
end
return #due
