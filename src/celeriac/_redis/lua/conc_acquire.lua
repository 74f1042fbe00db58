-- conc_acquire: take a slot under a concurrency limit, or park the message until one frees.
--
-- KEYS[1]  celeriac:{queue}:cl:<task>[:<key>]       sorted set of holders: delivery -> lease expiry
--          (ms); bounded by the limit; TTL refreshed to a lease past the last expiry
-- KEYS[2]  celeriac:{queue}:cl:<task>[:<key>]:wait  list of parked messages (FIFO); drained by
--          conc_release.lua and conc_sweep.lua; TTL none: it holds tasks, like the ready stream
-- KEYS[3]  celeriac:{queue}:cl:index                set of limiter names of this queue with parked
--          messages (the sweep's work list); a name leaves when its wait list empties
-- KEYS[4]  celeriac:{queue}:ready                   stream of ready messages; consumer group ARGV[1]
-- ARGV[1]  consumer group
-- ARGV[2]  limit (max holders)
-- ARGV[3]  lease in ms: a holder not renewed for this long (its worker died) frees its slot
-- ARGV[4]  holder id (queue entry id of the delivery)
-- ARGV[5]  limiter name (the suffix after cl:, for the index)
-- ARGV[6]  stream entry id of the delivery (acked and deleted when parked)
-- ARGV[7]  the message (parked as is)
--
-- Atomic, so the limit holds across all workers. A message that conc_release.lua moved back from the
-- wait list already holds a slot (under its new stream entry id). A parked message leaves the stream (the worker's
-- slot is free at once, nothing polls): it comes back to the ready stream when a holder releases
-- or its lease expires. Returns 1 when the slot was taken, 0 when parked.
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if redis.call('ZSCORE', KEYS[1], ARGV[4]) then
  -- a parked message that conc_release.lua moved back holds the slot it was given
  redis.call('ZADD', KEYS[1], now_ms + lease, ARGV[4])
  return 1
end
-- a new message waits behind parked ones (FIFO), even when a slot looks free
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) and redis.call('LLEN', KEYS[2]) == 0 then
  redis.call('ZADD', KEYS[1], now_ms + lease, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], 2 * lease)
  return 1
end
redis.call('RPUSH', KEYS[2], ARGV[7])
redis.call('SADD', KEYS[3], ARGV[5])
redis.call('XACK', KEYS[4], ARGV[1], ARGV[6])
redis.call('XDEL', KEYS[4], ARGV[6])
return 0
