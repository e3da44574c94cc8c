-- KEYS[1] = hub:{q}   ARGV: 1 ticket id, 2 agent or '' (anyone), 3 mode: requeue | drop,
--   4 unit to requeue into ('' keeps its unit), 5 score ('' keeps its score)
-- Returns {'ok', previous holder or ''} | {'not_holder', holder}
local q = KEYS[1]
local tid = ARGV[1]
local cur = redis.call('HGET', q .. ':lease', tid)
local holder = ''
if cur then
  holder = string.match(cur, '^(.*)|%d+$')
  if ARGV[2] ~= '' and holder ~= ARGV[2] then return {'not_holder', holder} end
  redis.call('HDEL', q .. ':lease', tid)
  redis.call('ZREM', q .. ':expiry', tid)
  redis.call('SREM', q .. ':held:' .. holder, tid)
end
local old = redis.call('HGET', q .. ':where', tid)
if ARGV[3] == 'drop' then
  if old then redis.call('ZREM', q .. ':wait:' .. old, tid) end
  redis.call('HDEL', q .. ':where', tid)
  redis.call('HDEL', q .. ':score', tid)
  return {'ok', holder}
end
local unit = ARGV[4]
if unit == '' then unit = old or 'general' end
if old and old ~= unit then redis.call('ZREM', q .. ':wait:' .. old, tid) end
local score = ARGV[5]
if score == '' then score = redis.call('HGET', q .. ':score', tid) or '0' end
redis.call('ZADD', q .. ':wait:' .. unit, score, tid)
redis.call('HSET', q .. ':where', tid, unit)
redis.call('HSET', q .. ':score', tid, score)
return {'ok', holder}
