-- reclaim: take over deliveries whose lease expired (their worker died or was cut off), or
-- dead-letter them when they have been delivered max_deliveries times without an outcome.
--
-- KEYS[1]  celeriac:{queue}:ready  stream of ready messages; consumer group ARGV[1]
-- KEYS[2]  celeriac:{queue}:dead   stream of dead letters (fields m, reason, time), capped
-- KEYS[3]  celeriac:{queue}:reclaimed  hash: consumer -> deliveries taken from it (see settle.lua)
-- ARGV[1]  consumer group
-- ARGV[2]  consumer taking the messages over (the caller)
-- ARGV[3]  lease in ms: entries idle at least this long are expired
-- ARGV[4]  at most this many messages to take (the caller's free slots)
-- ARGV[5]  max deliveries
-- ARGV[6]  dead-letter cap (approximate MAXLEN)
-- ARGV[7]  dead-letter reason, "{deliveries}" standing for the delivery count (the text lives in
--          celeriac.broker.base, shared with the memory broker)
--
-- Returns {dead_lettered, id1, message1, deliveries1, id2, ...}.
local lease_ms = tonumber(ARGV[3])
local expired = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', lease_ms, '-', '+', tonumber(ARGV[4]))
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local out = {0}
for _, p in ipairs(expired) do
  local id, deliveries = p[1], tonumber(p[4])
  -- the previous owner's late outcome must now be checked against the pending list (settle.lua)
  redis.call('HINCRBY', KEYS[3], p[2], 1)
  if deliveries >= tonumber(ARGV[5]) then
    local entry = redis.call('XRANGE', KEYS[1], id, id)
    if entry[1] ~= nil then
      local fields = entry[1][2]
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', tonumber(ARGV[6]), '*', 'm', fields[2],
        'reason', (string.gsub(ARGV[7], '{deliveries}', tostring(deliveries))), 'time', now_ms)
    end
    redis.call('XACK', KEYS[1], ARGV[1], id)
    redis.call('XDEL', KEYS[1], id)
    out[1] = out[1] + 1
  else
    local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], lease_ms, id)
    if claimed[1] ~= nil and claimed[1] ~= false then
      table.insert(out, id)
      table.insert(out, claimed[1][2][2])
      table.insert(out, deliveries + 1)
    end
  end
end
return out
