-- chord_part: count finished header members of one chord; send the body exactly once, atomically
-- with the last count.
--
-- KEYS[1]  celeriac:{queue}:chord:<chord id>       the chord's hash (see chord_init.lua); d counts
--                                                   the members that succeeded
-- KEYS[2]  celeriac:{queue}:ready                  stream of the body's queue (same hash slot)
-- KEYS[3]  celeriac:{queue}:chord:<chord id>:v     sorted set: the members' values (each two
--                                                   msgpack objects: index, value) scored by index,
--                                                   so the body reads them in member order with one
--                                                   ZRANGE
-- KEYS[4]  celeriac:{queue}:chord:<chord id>:bits  bitmap: bit i set once member i has counted
-- ARGV[1]  TTL in ms (refreshed on the three keys)
-- ARGV[2..] triples: member index, kind ('s' succeeded, 'f' failed), payload (s: the member's
--          index and value, msgpack; f: the failure, reported to the caller)
--
-- A member counts once however often it runs (SETBIT on its index: a redelivered member that ran
-- twice is a no-op). A failure counts only for a member that has not succeeded, and only before the
-- body was sent. Returns:
--   {'gone'}                    no such chord (completed and deleted, or expired)
--   {'wait'}                    members still missing
--   {'fired'}                   this call counted the last member and sent the body
--   {'failed', body, failure}   a member failed: the caller fails the body (once the chord is closed
--                               by deleting its keys, later members get 'gone')
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'gone'}
end
local sent = redis.call('HEXISTS', KEYS[1], 'x') == 1
for i = 2, #ARGV, 3 do
  local index = tonumber(ARGV[i])
  if ARGV[i + 1] == 's' then
    if not sent and redis.call('SETBIT', KEYS[4], index, 1) == 0 then
      redis.call('ZADD', KEYS[3], index, ARGV[i + 2])
      redis.call('HINCRBY', KEYS[1], 'd', 1)
    end
  elseif not sent and redis.call('GETBIT', KEYS[4], index) == 0 then
    redis.call('HSETNX', KEYS[1], 'f', ARGV[i + 2])
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if sent then
  return {'wait'}
end
redis.call('PEXPIRE', KEYS[3], ARGV[1])
redis.call('PEXPIRE', KEYS[4], ARGV[1])
local state = redis.call('HMGET', KEYS[1], 'f', 'b', 'd', 'n', 'k')
if state[1] then
  return {'failed', state[2], state[1]}
end
if tonumber(state[3]) >= tonumber(state[4]) then
  redis.call('XADD', KEYS[2], '*', 'm', state[2])
  redis.call('DEL', KEYS[4])
  if state[5] == '1' then
    -- the body reads the values when it starts; its outcome deletes the hash and the values
    redis.call('HSET', KEYS[1], 'x', '1')
    redis.call('HDEL', KEYS[1], 'b')
  else
    redis.call('DEL', KEYS[1], KEYS[3])
  end
  return {'fired'}
end
return {'wait'}
