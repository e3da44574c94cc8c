-- Append several live events to the capped event stream, in order: one call per batch.
-- KEYS[1] = hub:{events}   ARGV[1] = the cap (MAXLEN ~), ARGV[2..] = each event's JSON
-- Returns the new entries' ids, in order.
local out = {}
for i = 2, #ARGV do
  out[#out + 1] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[i])
end
return out
