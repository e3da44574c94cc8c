-- KEYS[1] = hub:c:{<cid>}   ARGV: 1 ticket n, 2 event id, 3 event json, 4 now ms,
--   5.. field/value pairs to set on the ticket in the same step
-- The audit trail and the change it records are written together, or not at all.
local base = KEYS[1]
local tk = base .. ':t:' .. ARGV[1]
if redis.call('EXISTS', tk) == 0 then return 0 end
local ek = base .. ':m:' .. ARGV[2]
if redis.call('EXISTS', ek) == 1 then return 2 end
redis.call('HSET', ek, 'json', ARGV[3], 'ticket', ARGV[1], 'dir', 'event', 'at', ARGV[4])
redis.call('RPUSH', tk .. ':log', ARGV[2])
redis.call('HSET', tk, 'updated_at', ARGV[4])
for i = 5, #ARGV, 2 do
  if ARGV[i + 1] == '' then redis.call('HDEL', tk, ARGV[i])
  else redis.call('HSET', tk, ARGV[i], ARGV[i + 1]) end
end
return 1
