-- Record a message the business sent outside the hub (an Instagram echo of a reply typed in
-- the Instagram app) on a contact's ticket, as an outbound entry already sent.
-- KEYS[1] = hub:c:{<cid>}   ARGV: 1 ticket n ('' = the open ticket, else the latest, else a
--   new resolved one), 2 entry id, 3 record json, 4 at ms, 5 author, 6 channel, 7 account
-- Idempotent on the entry id. Returns {created 0|1, ticket n}.
local base = KEYS[1]
local rk = base .. ':m:' .. ARGV[2]
if redis.call('EXISTS', rk) == 1 then return {0, redis.call('HGET', rk, 'ticket')} end
local n = ARGV[1]
if n == '' then n = redis.call('GET', base .. ':open') or '' end
if n ~= '' and redis.call('HGET', base .. ':t:' .. n, 'status') ~= 'open' then
  local latest = redis.call('ZREVRANGE', base .. ':tickets', 0, 0)
  n = latest[1] or n
end
if n == '' then
  -- The business spoke first: keep it on a resolved ticket, which the citizen's answer
  -- reopens within the reopen window (no queue entry, no acknowledgement for an echo).
  n = tostring(redis.call('INCR', base .. ':tseq'))
  local tk = base .. ':t:' .. n
  redis.call('HSET', tk, 'status', 'resolved', 'resolved_at', ARGV[4], 'created_at', ARGV[4],
    'updated_at', ARGV[4], 'channel', ARGV[6], 'account', ARGV[7], 'unit', 'general',
    'priority', 'normal', 'msg_count', 0)
  redis.call('SET', base .. ':open', n)
  redis.call('ZADD', base .. ':tickets', ARGV[4], n)
  if redis.call('HSETNX', base, 'created_at', ARGV[4]) == 1 then
    redis.call('HSET', base, 'id', string.match(base, '{(.*)}'))
  end
end
local tk = base .. ':t:' .. n
redis.call('HSET', rk, 'json', ARGV[3], 'ticket', n, 'dir', 'out', 'at', ARGV[4],
  'state', 'sent', 'state_at', ARGV[4], 'attempts', 0, 'kind', 'external', 'author', ARGV[5])
redis.call('RPUSH', tk .. ':log', ARGV[2])
redis.call('HSET', tk, 'updated_at', ARGV[4])
if redis.call('HSETNX', tk, 'first_response_at', ARGV[4]) == 1 then
  redis.call('HSET', tk, 'first_response_by', ARGV[5])
end
return {1, n}
