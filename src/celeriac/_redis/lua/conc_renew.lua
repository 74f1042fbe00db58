-- conc_renew: extend the leases of concurrency slots held by tasks still running.
--
-- KEYS[1]  celeriac:{queue}:cl:<task>[:<key>]  sorted set of holders: delivery -> lease expiry (ms)
-- ARGV[1]  lease in ms
-- ARGV[2..] holder ids (only those still present are renewed: an expired one may have been replaced)
--
-- Returns the number renewed.
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local lease = tonumber(ARGV[1])
local n = 0
for i = 2, #ARGV do
  n = n + redis.call('ZADD', KEYS[1], 'XX', 'CH', now_ms + lease, ARGV[i])
end
if n > 0 then redis.call('PEXPIRE', KEYS[1], 2 * lease) end
return n
