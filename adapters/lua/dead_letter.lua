-- KEYS[1] = stream, KEYS[2] = its dead-letter stream   ARGV: 1 group, 2 entry id, 3 error,
--   4 deliveries, then field/value pairs of the entry
-- Move an entry that keeps failing to the dead-letter stream and ack it, as one step.
local fields = {'source_id', ARGV[2], 'error', ARGV[3], 'deliveries', ARGV[4]}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('XADD', KEYS[2], '*', unpack(fields))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return 1
