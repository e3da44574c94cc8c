-- KEYS[1] = hub:{q}   ARGV: 1 now ms, 2 max
-- Lapsed claims go back to their unit's queue with their original place (score).
local q = KEYS[1]
local due = redis.call('ZRANGEBYSCORE', q .. ':expiry', '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, tid in ipairs(due) do
  local cur = redis.call('HGET', q .. ':lease', tid)
  local holder = cur and string.match(cur, '^(.*)|%d+$') or ''
  redis.call('HDEL', q .. ':lease', tid)
  redis.call('ZREM', q .. ':expiry', tid)
  if holder ~= '' then redis.call('SREM', q .. ':held:' .. holder, tid) end
  local unit = redis.call('HGET', q .. ':where', tid) or 'general'
  redis.call('ZADD', q .. ':wait:' .. unit, redis.call('HGET', q .. ':score', tid) or '0', tid)
  redis.call('HSET', q .. ':where', tid, unit)
  out[#out + 1] = tid
  out[#out + 1] = holder
end
return out
