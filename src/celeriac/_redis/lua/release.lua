-- release: give deliveries back to the queue at shutdown, for deliveries this consumer still owns.
--
-- KEYS[1]  celeriac:{queue}:ready  stream of ready messages; consumer group ARGV[1]
-- KEYS[2]  celeriac:{queue}:reclaimed  hash: consumer -> deliveries taken from it (see settle.lua);
--          a consumer that released deliveries no longer owns them, so it is marked as well
-- ARGV[1]  consumer group
-- ARGV[2]  consumer (this worker)
-- ARGV[3]  max entries of this consumer's pending list to read
-- ARGV[4]  lease in ms
-- ARGV[5..] triples: id, deliveries, mode
--   mode 'unstarted': the task never started, so the delivery should not count: the message is
--                     appended again as a fresh entry and the old entry acked and deleted.
--   mode 'interrupted': the task started and was cut short: its idle time is set past the lease
--                     so any worker reclaims it at once, counting the delivery toward max_deliveries.
-- Returns the number of deliveries released.
local owned = {}
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', tonumber(ARGV[3]), ARGV[2])
for _, p in ipairs(pending) do owned[p[1]] = p[4] end
local n = 0
for i = 5, #ARGV, 3 do
  local id = ARGV[i]
  if owned[id] == tonumber(ARGV[i + 1]) then
    if ARGV[i + 2] == 'unstarted' then
      local entry = redis.call('XRANGE', KEYS[1], id, id)
      if entry[1] ~= nil then
        redis.call('XADD', KEYS[1], '*', 'm', entry[1][2][2])
      end
      redis.call('XACK', KEYS[1], ARGV[1], id)
      redis.call('XDEL', KEYS[1], id)
    else
      redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id, 'IDLE', tonumber(ARGV[4]) + 1, 'JUSTID')
    end
    n = n + 1
  end
end
if n > 0 then redis.call('HINCRBY', KEYS[2], ARGV[2], n) end
return n
