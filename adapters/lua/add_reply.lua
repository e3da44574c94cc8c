-- KEYS[1] = hub:c:{<cid>}   ARGV: 1 ticket n, 2 reply id, 3 reply json, 4 now ms,
--   5 kind (agent|auto), 6 author
-- Idempotent on the reply id: returns {created 0|1, state}.
local base = KEYS[1]
local tk = base .. ':t:' .. ARGV[1]
if redis.call('EXISTS', tk) == 0 then return {-1, 'no-ticket'} end
local rk = base .. ':m:' .. ARGV[2]
if redis.call('EXISTS', rk) == 1 then return {0, redis.call('HGET', rk, 'state')} end
redis.call('HSET', rk, 'json', ARGV[3], 'ticket', ARGV[1], 'dir', 'out', 'at', ARGV[4],
  'state', 'queued', 'state_at', ARGV[4], 'attempts', 0, 'kind', ARGV[5], 'author', ARGV[6])
redis.call('RPUSH', tk .. ':log', ARGV[2])
redis.call('HSET', tk, 'updated_at', ARGV[4])
if ARGV[5] == 'auto' then
  redis.call('HSETNX', tk, 'ack_reply', ARGV[2])
elseif redis.call('HSETNX', tk, 'first_response_at', ARGV[4]) == 1 then
  redis.call('HSET', tk, 'first_response_by', ARGV[6])
end
return {1, 'queued'}
