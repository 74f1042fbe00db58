-- extend: renew the leases of deliveries this consumer still owns by resetting their idle time.
--
-- KEYS[1]  celeriac:{queue}:ready  stream of ready messages; consumer group ARGV[1]
-- ARGV[1]  consumer group
-- ARGV[2]  consumer (this worker)
-- ARGV[3]  max entries of this consumer's pending list to read
-- ARGV[4..] pairs: id, deliveries
--
-- XCLAIM ... JUSTID resets the idle time without counting a delivery. Only entries still owned with
-- the same delivery count are renewed, so a worker can never steal back a reclaimed message.
-- Returns the ids that are no longer owned (lost leases).
local owned = {}
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', tonumber(ARGV[3]), ARGV[2])
for _, p in ipairs(pending) do owned[p[1]] = p[4] end
local keep, lost = {}, {}
for i = 4, #ARGV, 2 do
  if owned[ARGV[i]] == tonumber(ARGV[i + 1]) then
    table.insert(keep, ARGV[i])
  else
    table.insert(lost, ARGV[i])
  end
end
-- XCLAIM takes the ids before its options, and Lua cuts `unpack(t)` to its first value unless it is
-- the last argument (`f(unpack(t), x)` passes only t[1]): so JUSTID goes at the end of the table, and
-- the ids go in chunks that stay well below Lua's limit on the number of arguments of one call.
for first = 1, #keep, 1000 do
  local ids = {}
  for i = first, math.min(first + 999, #keep) do ids[#ids + 1] = keep[i] end
  ids[#ids + 1] = 'JUSTID'
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(ids))
end
return lost
