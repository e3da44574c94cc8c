-- KEYS[1] = hub:c:{<cid>}:t:<n>   ARGV[1] = candidate number
-- A ticket keeps the first number it was given; a redelivery cannot renumber it.
if redis.call('HSETNX', KEYS[1], 'number', ARGV[1]) == 1 then return {ARGV[1], 1} end
return {redis.call('HGET', KEYS[1], 'number'), 0}
