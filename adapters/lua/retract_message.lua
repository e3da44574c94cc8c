-- The citizen deleted a message on the provider's side: blank it on the ticket (text,
-- attachments, location and raw payload), keep that it existed and when it was retracted.
-- KEYS[1] = hub:c:{<cid>}   ARGV: 1 dedupe key of the message, 2 now ms
-- Returns {message id, ticket n, 1 retracted now | 0 already} or {} when unknown.
local base = KEYS[1]
local mid = redis.call('HGET', base .. ':seen', ARGV[1])
if not mid then return {} end
local mk = base .. ':m:' .. mid
local n = redis.call('HGET', mk, 'ticket')
if redis.call('HEXISTS', mk, 'retracted_at') == 1 then return {mid, n, 0} end
local body = cjson.decode(redis.call('HGET', mk, 'json'))
body['text'] = ''
body['attachments'] = nil
body['location'] = cjson.null
body['raw'] = ''
body['retracted'] = true
redis.call('HSET', mk, 'json', cjson.encode(body), 'retracted_at', ARGV[2])
redis.call('HSET', base .. ':t:' .. n, 'updated_at', ARGV[2])
return {mid, n, 1}
