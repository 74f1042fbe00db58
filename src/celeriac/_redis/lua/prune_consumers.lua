-- prune_consumers: remove consumers (workers that stopped or died) that own no delivery any more.
--
-- KEYS[1]  celeriac:{queue}:ready  stream of ready messages; consumer group ARGV[1]
-- KEYS[2]  celeriac:{queue}:reclaimed  hash: consumer -> deliveries taken from it (field removed too)
-- ARGV[1]  consumer group
-- ARGV[2]  only consumers idle at least this many ms
-- ARGV[3]  a consumer never to remove (the caller), or ''
-- ARGV[4]  remove only this consumer, or '' for any that qualifies
--
-- Every worker run joins the group under a new name; without pruning the group would grow with every
-- restart. A script, because the check "owns nothing" and the removal must be one step: XGROUP
-- DELCONSUMER drops the consumer's pending entries, which would strand deliveries taken in between.
-- Returns the number of consumers removed.
local removed = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local name, pending, idle = nil, nil, nil
  for j = 1, #c, 2 do
    if c[j] == 'name' then name = c[j + 1] end
    if c[j] == 'pending' then pending = tonumber(c[j + 1]) end
    if c[j] == 'idle' then idle = tonumber(c[j + 1]) end
  end
  if name ~= ARGV[3] and (ARGV[4] == '' or name == ARGV[4]) and pending == 0 and idle >= tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    redis.call('HDEL', KEYS[2], name)
    removed = removed + 1
  end
end
return removed
