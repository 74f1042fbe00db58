-- conc_release: free concurrency slots (tasks finished) and move parked messages into free slots.
--
-- KEYS[1]  celeriac:{queue}:cl:<task>[:<key>]       sorted set of holders (see conc_acquire.lua)
-- KEYS[2]  celeriac:{queue}:cl:<task>[:<key>]:wait  list of parked messages
-- KEYS[3]  celeriac:{queue}:cl:index                set of limiter names with parked messages
-- KEYS[4]  celeriac:{queue}:ready                   stream of ready messages
-- ARGV[1]  limit
-- ARGV[2]  limiter name
-- ARGV[3]  lease in ms
-- ARGV[4..] holder ids to release ('' for none: a sweep after leases expired)
--
-- Expired holders (their worker died) are dropped first. A message moved back to the stream is given
-- the free slot at once, under its new entry id (conc_acquire.lua lets it start when fetched); if no
-- worker fetches it within the lease, the slot frees again. Returns the number of parked messages moved to the ready stream.
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local lease = tonumber(ARGV[3])
for i = 4, #ARGV do
  if ARGV[i] ~= '' then redis.call('ZREM', KEYS[1], ARGV[i]) end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
local free = tonumber(ARGV[1]) - redis.call('ZCARD', KEYS[1])
local moved = 0
while moved < free do
  local msg = redis.call('LPOP', KEYS[2])
  if not msg then break end
  local id = redis.call('XADD', KEYS[4], '*', 'm', msg)
  redis.call('ZADD', KEYS[1], now_ms + lease, id)
  moved = moved + 1
end
if moved > 0 then redis.call('PEXPIRE', KEYS[1], 2 * lease) end
if redis.call('LLEN', KEYS[2]) == 0 then redis.call('SREM', KEYS[3], ARGV[2]) end
return moved
