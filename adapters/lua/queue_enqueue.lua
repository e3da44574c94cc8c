-- KEYS[1] = hub:{q}   ARGV: 1 ticket id, 2 unit, 3 score (priority rank * 1e13 + since ms)
-- A ticket waits in exactly one unit queue, unless an agent holds it.
local q = KEYS[1]
local tid = ARGV[1]
if redis.call('HEXISTS', q .. ':lease', tid) == 1 then return 'held' end
local old = redis.call('HGET', q .. ':where', tid)
if old and old ~= ARGV[2] then redis.call('ZREM', q .. ':wait:' .. old, tid) end
local cur = redis.call('ZSCORE', q .. ':wait:' .. ARGV[2], tid)
local score = ARGV[3]
if cur and tonumber(cur) < tonumber(score) then score = cur end
redis.call('ZADD', q .. ':wait:' .. ARGV[2], score, tid)
redis.call('HSET', q .. ':where', tid, ARGV[2])
redis.call('HSET', q .. ':score', tid, score)
return 'waiting'
