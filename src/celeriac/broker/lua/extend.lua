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
if #keep > 0 then
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(keep), 'JUSTID')
end
return lost
