-- KEYS[1] = hub:c:{<cid>}   ARGV: 1 ticket n, 2 status (open|resolved|closed), 3 now ms,
--   4 audit event id, 5 audit event json
-- The status change and its audit entry are written together.
local base = KEYS[1]
local tk = base .. ':t:' .. ARGV[1]
local st = redis.call('HGET', tk, 'status')
if not st then return {'missing', ''} end
if st == ARGV[2] then return {'unchanged', st} end
if st == 'closed' then return {'refused', st} end
redis.call('HSET', tk, 'status', ARGV[2], ARGV[2] .. '_at', ARGV[3], 'updated_at', ARGV[3])
if ARGV[2] == 'closed' and redis.call('GET', base .. ':open') == ARGV[1] then
  redis.call('DEL', base .. ':open')
end
if ARGV[2] ~= 'open' then redis.call('HSET', tk, 'assignee', '') end
local ek = base .. ':m:' .. ARGV[4]
redis.call('HSET', ek, 'json', ARGV[5], 'ticket', ARGV[1], 'dir', 'event', 'at', ARGV[3])
redis.call('RPUSH', tk .. ':log', ARGV[4])
return {'changed', st}
