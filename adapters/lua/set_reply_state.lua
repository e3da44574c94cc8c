-- KEYS[1] = hub:c:{<cid>}:m:<reply id>
-- ARGV: 1 new state, 2 its rank, 3 now ms, 4 provider id, 5 error code, 6 error message,
--       7 force (1: the sender's own transition, may step back from sending to retrying)
-- Status callbacks arrive out of order: keep the highest-ranked state, never move backwards.
local RANK = {queued=0, sending=1, retrying=1, sent=2, undelivered=3, failed=3,
              delivered=4, read=5}
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return {'missing', ''} end
if ARGV[7] ~= '1' and RANK[st] >= tonumber(ARGV[2]) then return {'ignored', st} end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'state_at', ARGV[3],
  'state_' .. ARGV[1] .. '_at', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'provider_id', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'error_code', ARGV[5], 'error_message', ARGV[6]) end
return {'applied', st}
