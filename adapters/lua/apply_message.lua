-- Store one inbound message on its contact's ticket, atomically and idempotently.
-- KEYS[1] = hub:c:{<cid>} (every other key used shares its hash tag)
-- ARGV: 1 message id, 2 dedupe key, 3 message json, 4 received_at ms, 5 reopen window ms,
--       6 channel, 7 account, 8 reply address, 9 display name, 10 sender identity, 11 unit,
--       12 category, 13 priority (11-13 are used only when the message opens a ticket),
--       14 a ticket n a thread hint points to ('' for none): used while it can take messages,
--       15 the channel's reply context (JSON, '' for none): what a reply needs to thread
-- ARGV[10] may be '': the sender is another contact's identity (a thread hint brought the
-- message here), so it is not added to this contact's identities.
-- Returns {outcome, message id, ticket n, ticket number or '', ack reply id or '', the
-- ticket's indexed fields after the message (RedisStore.REINDEX_FIELDS, in that order)}:
-- what the list indexes need, without reading the ticket again.
-- outcome: new | reopened | appended | dup:<original outcome>
local function answer(outcome, id, n, tk)
  local f = redis.call('HMGET', tk, 'number', 'ack_reply', 'created_at', 'updated_at', 'ix',
    'priority', 'status', 'channel', 'unit', 'assignee')
  return {outcome, id, n, f[1] or '', f[2] or '', {f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10]}}
end
local base = KEYS[1]
local seen = base .. ':seen'
local prev = redis.call('HGET', seen, ARGV[2])
if prev then
  local mk = base .. ':m:' .. prev
  local n = redis.call('HGET', mk, 'ticket')
  local tk = base .. ':t:' .. n
  local out = redis.call('HGET', mk, 'outcome') or 'appended'
  return answer('dup:' .. out, prev, n, tk)
end
local now = tonumber(ARGV[4])
local outcome = 'appended'
local n = redis.call('GET', base .. ':open')
local known = n  -- a contact with an open ticket exists already (its created_at is set)
if ARGV[14] ~= '' and redis.call('EXISTS', base .. ':t:' .. ARGV[14]) == 1 then
  local hinted = redis.call('HGET', base .. ':t:' .. ARGV[14], 'status')
  if hinted == 'open' or hinted == 'resolved' then n = ARGV[14] end
end
-- The ticket's fields are read once, up front: what the status needs, and what the answer
-- gives back (one HMGET instead of a read for the status, an HINCRBY and a read at the end;
-- each redis.call costs about 2 us of Lua bridge on top of the command).
local f
if n then
  local tk = base .. ':t:' .. n
  f = redis.call('HMGET', tk, 'status', 'resolved_at', 'msg_count', 'number', 'ack_reply',
    'created_at', 'ix', 'priority', 'channel', 'unit', 'assignee')
  local st = f[1]
  if st == 'resolved' then
    if now - tonumber(f[2] or '0') <= tonumber(ARGV[5]) then
      outcome = 'reopened'
      redis.call('HSET', tk, 'status', 'open', 'reopened_at', now)
      redis.call('HINCRBY', tk, 'reopen_count', 1)
    else
      redis.call('HSET', tk, 'status', 'closed', 'closed_at', now, 'closed_by', 'reopen-window')
      n = nil
    end
  elseif st ~= 'open' then
    n = nil
  end
end
if not n then
  outcome = 'new'
  n = tostring(redis.call('INCR', base .. ':tseq'))
  local tk = base .. ':t:' .. n
  redis.call('HSET', tk, 'status', 'open', 'created_at', now, 'channel', ARGV[6],
    'account', ARGV[7], 'unit', ARGV[11], 'priority', ARGV[13])
  if ARGV[12] ~= '' then redis.call('HSET', tk, 'category', ARGV[12]) end
  redis.call('SET', base .. ':open', n)
  redis.call('ZADD', base .. ':tickets', now, n)
  f = {'open', false, '0', false, false, ARGV[4], false, ARGV[13], ARGV[6], ARGV[11], false}
end
local tk = base .. ':t:' .. n
local mk = base .. ':m:' .. ARGV[1]
redis.call('HSET', mk, 'json', ARGV[3], 'ticket', n, 'dir', 'in', 'at', now, 'outcome', outcome)
redis.call('RPUSH', tk .. ':log', ARGV[1])
redis.call('HSET', seen, ARGV[2], ARGV[1])
redis.call('HSET', tk, 'updated_at', now, 'last_inbound_at', now, 'reply_channel', ARGV[6],
  'reply_account', ARGV[7], 'reply_to', ARGV[8], 'reply_context', ARGV[15],
  'msg_count', (tonumber(f[3]) or 0) + 1)
local contact = {'last_seen_at', now}
if ARGV[10] ~= '' and ARGV[8] ~= '' then
  -- where this citizen last wrote on each channel account: a reply can go there instead
  contact[3] = 'last_in:' .. ARGV[6] .. ':' .. ARGV[7]
  contact[4] = now .. '|' .. ARGV[8]
end
if ARGV[9] ~= '' then
  contact[#contact + 1] = 'name'
  contact[#contact + 1] = ARGV[9]
end
redis.call('HSET', base, unpack(contact))
if not known and redis.call('HSETNX', base, 'created_at', now) == 1 then
  redis.call('HSET', base, 'id', string.match(base, '{(.*)}'))
end
if ARGV[10] ~= '' then redis.call('SADD', base .. ':ids', ARGV[10]) end
-- the indexed fields as this message leaves them (REINDEX_FIELDS: created_at, updated_at,
-- ix, priority, status, channel, unit, assignee): updated_at is ARGV[4] as stored, the
-- status open (it was, or this message opened or reopened it), the rest unchanged
return {outcome, ARGV[1], n, f[4] or '', f[5] or '',
  {f[6], ARGV[4], f[7], f[8], 'open', f[9], f[10], f[11]}}
