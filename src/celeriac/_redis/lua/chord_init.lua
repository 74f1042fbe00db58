-- chord_init: create the state of one chord, in the hash slot of its body's queue.
--
-- KEYS[1]  celeriac:{queue}:chord:<chord id>  hash: n (header size), d (members counted), b (the
--          body's encoded message, stored once), k ('1': the body reads the header's values), f (the
--          first failure), x (body sent). The values and the members counted are in two more keys
--          of the same slot (see chord_part.lua).
--          TTL ARGV[4], refreshed by every part; deleted when the chord completes.
-- KEYS[2]  celeriac:{queue}:fired  sorted set of dispatch keys (see dispatch.lua); used when ARGV[5]
-- ARGV[1]  dispatch key of this chord (its id)
-- ARGV[2]  n, the number of header members (> 0)
-- ARGV[3]  the body's encoded message
-- ARGV[4]  TTL in ms
-- ARGV[5]  '1': skip when this chord was dispatched before (a worker dispatching it); '0': a client
-- ARGV[6]  '1': the body needs the header's values; '0': an immutable body
--
-- Returns 1 when the chord was created, 0 when it was dispatched before.
if ARGV[5] == '1' then
  local now = redis.call('TIME')
  local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms)
  if redis.call('ZADD', KEYS[2], 'NX', now_ms + tonumber(ARGV[4]), ARGV[1]) == 0 then
    return 0
  end
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
redis.call('HSET', KEYS[1], 'n', ARGV[2], 'd', 0, 'b', ARGV[3], 'k', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
