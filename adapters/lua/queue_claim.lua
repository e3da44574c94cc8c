-- KEYS[1] = hub:{q}   ARGV: 1 agent, 2 now ms, 3 lease ms, 4 ticket id or '' (next),
--   5.. the units to take from (for 'next')
-- Atomic: two agents never hold the same ticket; a lapsed lease can be taken over.
-- Returns {'ok', tid} | {'empty'} | {'taken', holder} | {'missing'}
local q = KEYS[1]
local agent, now, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local tid = ARGV[4]
if tid == '' then
  local best, best_score = nil, nil
  for i = 5, #ARGV do
    local top = redis.call('ZRANGE', q .. ':wait:' .. ARGV[i], 0, 0, 'WITHSCORES')
    if top[1] and (not best_score or tonumber(top[2]) < best_score) then
      best, best_score = top[1], tonumber(top[2])
    end
  end
  if not best then return {'empty'} end
  tid = best
else
  local cur = redis.call('HGET', q .. ':lease', tid)
  if cur then
    local holder, exp = string.match(cur, '^(.*)|(%d+)$')
    if holder ~= agent and tonumber(exp) > now then return {'taken', holder} end
    if holder ~= agent then redis.call('SREM', q .. ':held:' .. holder, tid) end
  elseif not redis.call('HGET', q .. ':where', tid) then
    return {'missing'}
  end
end
local unit = redis.call('HGET', q .. ':where', tid)
if unit then redis.call('ZREM', q .. ':wait:' .. unit, tid) end
redis.call('HSET', q .. ':lease', tid, agent .. '|' .. (now + ttl))
redis.call('ZADD', q .. ':expiry', now + ttl, tid)
redis.call('SADD', q .. ':held:' .. agent, tid)
return {'ok', tid}
