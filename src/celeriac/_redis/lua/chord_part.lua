-- chord_part: count finished header members of one chord; send the body exactly once, atomically
-- with the last count.
--
-- KEYS[1]  celeriac:{queue}:chord:<chord id>  the chord's hash (see chord_init.lua)
-- KEYS[2]  celeriac:{queue}:ready             stream of the body's queue (same hash slot)
-- ARGV[1]  TTL in ms (refreshed)
-- ARGV[2..] triples: member index, kind ('s' succeeded, 'f' failed), payload (s: the encoded result
--          record; f: the failure, reported to the caller)
--
-- A member counts once however often it runs (HSETNX on its index: a redelivered member that ran
-- twice is a no-op); the count is the hash's length, so counting costs one command per member. A failure counts only for a member that has not succeeded, and only before the
-- body was sent. Returns:
--   {'gone'}                    no such chord (completed and deleted, or expired)
--   {'wait'}                    members still missing
--   {'fired'}                   this call counted the last member and sent the body
--   {'failed', body, failure}   a member failed: the caller fails the body (once the chord is closed
--                               by deleting this hash, later members get 'gone')
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'gone'}
end
local sent = redis.call('HEXISTS', KEYS[1], 'x') == 1
for i = 2, #ARGV, 3 do
  local field = 'r' .. ARGV[i]
  if ARGV[i + 1] == 's' then
    redis.call('HSETNX', KEYS[1], field, ARGV[i + 2])
  elseif not sent and redis.call('HEXISTS', KEYS[1], field) == 0 then
    redis.call('HSETNX', KEYS[1], 'f', ARGV[i + 2])
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if sent then
  return {'wait'}
end
local failure = redis.call('HGET', KEYS[1], 'f')
if failure then
  return {'failed', redis.call('HGET', KEYS[1], 'b'), failure}
end
-- members counted: the hash's fields but n, b and k (no f: no failure so far; no x: not sent)
local state = redis.call('HMGET', KEYS[1], 'n', 'k')
if redis.call('HLEN', KEYS[1]) - 3 >= tonumber(state[1]) then
  redis.call('XADD', KEYS[2], '*', 'm', redis.call('HGET', KEYS[1], 'b'))
  if state[2] == '1' then
    -- the body reads the values from here when it starts; its outcome deletes the hash
    redis.call('HSET', KEYS[1], 'x', '1')
    redis.call('HDEL', KEYS[1], 'b')
  else
    redis.call('DEL', KEYS[1])
  end
  return {'fired'}
end
return {'wait'}
