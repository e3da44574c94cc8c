-- KEYS[1] = hub:{q}   ARGV: 1 ticket id, 2 agent, 3 now ms, 4 lease ms
local q = KEYS[1]
local cur = redis.call('HGET', q .. ':lease', ARGV[1])
if not cur then return 0 end
local holder = string.match(cur, '^(.*)|%d+$')
if holder ~= ARGV[2] then return 0 end
local exp = tonumber(ARGV[3]) + tonumber(ARGV[4])
redis.call('HSET', q .. ':lease', ARGV[1], holder .. '|' .. exp)
redis.call('ZADD', q .. ':expiry', exp, ARGV[1])
return 1
