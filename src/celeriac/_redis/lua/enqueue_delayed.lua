-- enqueue_delayed: park messages in a queue's delayed set until they are due.
--
-- KEYS[1]  celeriac:{queue}:delayed  sorted set, member = encoded message, score = due time (ms since epoch)
-- ARGV[1]  wake channel (pub/sub) of the queue: told when a message becomes the earliest one
-- ARGV[2..] triples: delay_ms, eta_ms, message; exactly one of delay_ms / eta_ms is non-empty
--
-- Why a script: the due time of a countdown is computed from the Redis clock (one clock for every
-- producer and worker), and the wake-up is published only when the head of the set changes.
-- Returns the number of messages parked.
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local head_before = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local n = 0
for i = 2, #ARGV, 3 do
  local due
  if ARGV[i] ~= '' then due = now_ms + tonumber(ARGV[i]) else due = tonumber(ARGV[i + 1]) end
  redis.call('ZADD', KEYS[1], due, ARGV[i + 2])
  n = n + 1
end
local head_after = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if head_before[2] == nil or tonumber(head_after[2]) < tonumber(head_before[2]) then
  redis.call('PUBLISH', ARGV[1], head_after[2])
end
return n
