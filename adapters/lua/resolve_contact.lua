-- KEYS[1] = hub:id:{<identity>}   ARGV[1] = candidate contact id
-- One identity names one contact forever (until an agent merges contacts).
local cid = redis.call('GET', KEYS[1])
if cid then return {cid, 0} end
redis.call('SET', KEYS[1], ARGV[1])
return {ARGV[1], 1}
