-- KEYS[1] = hub:c:{<cid>}:m:<reply id>   ARGV[1] = now ms, ARGV[2] = stale ms
-- Only one sender may hold a reply; a reply already sent or failed is never sent again.
-- A reply left in 'sending' longer than ARGV[2] belonged to a sender that died mid-send.
-- Returns {'go', attempts, json, previous state} or {'skip', state}.
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return {'skip', 'missing'} end
local now = tonumber(ARGV[1])
if st == 'sending' then
  local since = tonumber(redis.call('HGET', KEYS[1], 'state_at') or '0')
  if now - since < tonumber(ARGV[2]) then return {'skip', 'busy'} end
end
if st == 'queued' or st == 'retrying' or st == 'sending' then
  local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
  redis.call('HSET', KEYS[1], 'state', 'sending', 'state_at', ARGV[1])
  return {'go', attempts, redis.call('HGET', KEYS[1], 'json'), st}
end
return {'skip', st}
