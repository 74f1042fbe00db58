-- rate_park: hand deliveries back to wait in the delayed set until their reserved start times.
--
-- KEYS[1]  celeriac:{queue}:ready    stream of ready messages; consumer group ARGV[1]
-- KEYS[2]  celeriac:{queue}:delayed  sorted set, member = encoded message, score = due time (ms)
-- ARGV[1]  consumer group
-- ARGV[2]  wake channel of the queue (told when a message becomes the earliest delayed one)
-- ARGV[3..] triples: stream entry id, due time (ms, the start time a limiter reserved; a fraction
--          keeps the order of starts less than a millisecond apart), the message marked with that time
--          and its turn (rate_check.lua decides when it is reached)
--
-- One step per delivery, so a message is never both waiting and in the stream; the worker's slot is
-- free at once and nothing polls. A delivery no longer pending (acked or handed back already) adds
-- nothing. Returns the number handed back.
local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')[2]
head = head and tonumber(head)
local earliest, n = nil, 0
for i = 3, #ARGV, 3 do
  if redis.call('XACK', KEYS[1], ARGV[1], ARGV[i]) == 1 then
    redis.call('XDEL', KEYS[1], ARGV[i])
    local due = tonumber(ARGV[i + 1])
    redis.call('ZADD', KEYS[2], due, ARGV[i + 2])
    if earliest == nil or due < earliest then earliest = due end
    n = n + 1
  end
end
if earliest ~= nil and (head == nil or earliest < head) then redis.call('PUBLISH', ARGV[2], earliest) end
return n
