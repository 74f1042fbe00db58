-- promote: move due messages from a queue's delayed set to its ready stream, oldest due first.
--
-- KEYS[1]  celeriac:{queue}:delayed  sorted set, member = encoded message, score = due time (ms)
-- KEYS[2]  celeriac:{queue}:ready    stream of ready messages (field "m" = encoded message)
-- KEYS[3]  optional: celeriac:{queue}:levels  set of the priority levels used on the queue
-- ARGV[1]  at most this many messages per call
--
-- Atomic, so any number of workers may call it at the same due time: each message moves once.
-- Returns {moved, next_due_ms or -1, now_ms} so the caller can sleep until the next due time
-- measured on the Redis clock; with KEYS[3], a fourth element: the queue's priority levels (so a
-- worker learns of new levels on its schedule loop, at no extra round trip).
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local due = redis.call('ZRANGE', KEYS[1], '-inf', now_ms, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[1]))
if #due > 0 then
  -- the members just read are the lowest-ranked ones: remove them by rank in one command.
  -- Removed before they are appended, because a Redis over maxmemory refuses a script's first
  -- memory-growing command (XADD) but never one after the script has written: this way due messages
  -- still move (memory-neutral) while Redis is full, instead of waiting until memory frees.
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, #due - 1)
end
for _, msg in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'm', msg)
end
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local next_due = -1
if head[2] ~= nil then next_due = tonumber(head[2]) end
if KEYS[3] then
  return {#due, next_due, now_ms, redis.call('SMEMBERS', KEYS[3])}
end
return {#due, next_due, now_ms}
