-- Delete one archived ticket's own keys on its contact, only if it is still the ticket the
-- archive file holds (a note or a message that came in between would otherwise be lost).
-- KEYS[1] = hub:c:{<cid>}   ARGV: 1 ticket n, 2 its updated_at, 3 its status, 4 its log
--   length, all as archived; 5.. pairs of (dedupe key, message id) of its inbound messages
-- Keeps the contact, its identities, its other tickets and its ticket counter.
-- Returns 'deleted', 'gone' (an earlier run deleted it) or 'changed' (nothing deleted).
local base = KEYS[1]
local n = ARGV[1]
local tk = base .. ':t:' .. n
if redis.call('EXISTS', tk) == 0 then return 'gone' end
local log = tk .. ':log'
local f = redis.call('HMGET', tk, 'updated_at', 'status')
if (f[1] or '') ~= ARGV[2] or (f[2] or '') ~= ARGV[3]
    or redis.call('LLEN', log) ~= tonumber(ARGV[4]) then
  return 'changed'
end
for _, eid in ipairs(redis.call('LRANGE', log, 0, -1)) do
  local mk = base .. ':m:' .. eid
  if redis.call('HGET', mk, 'ticket') == n then redis.call('DEL', mk) end
end
-- a dedupe mark naming a deleted message would make a redelivery fail, not be ignored
local seen = base .. ':seen'
for i = 5, #ARGV, 2 do
  if redis.call('HGET', seen, ARGV[i]) == ARGV[i + 1] then redis.call('HDEL', seen, ARGV[i]) end
end
if redis.call('GET', base .. ':open') == n then redis.call('DEL', base .. ':open') end
redis.call('ZREM', base .. ':tickets', n)
redis.call('DEL', log, tk)
return 'deleted'
