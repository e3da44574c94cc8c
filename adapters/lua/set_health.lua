-- A source's health record, written only when its health changes, so that "since" keeps
-- the moment it changed however many processes report the same health afterwards.
-- KEYS[1] health hash; ARGV[1] source name, ARGV[2] "true"|"false", ARGV[3] the JSON record.
-- Returns 1 when it wrote, 0 when the source already had that health.
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local ok, old = pcall(cjson.decode, cur)
  if ok and type(old) == 'table' and tostring(old['healthy']) == ARGV[2] then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
