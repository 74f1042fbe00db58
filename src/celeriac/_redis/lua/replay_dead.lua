-- replay_dead: move dead letters back to the ready stream, oldest first.
--
-- KEYS[1]  celeriac:{queue}:dead   stream of dead letters (fields m, reason, time)
-- KEYS[2]  celeriac:{queue}:ready  stream of ready messages
-- ARGV[1]  at most this many entries
-- ARGV[2]  optional: a single dead-letter entry id to replay ('' for the oldest ARGV[1])
--
-- Returns the number of messages replayed.
local entries
if ARGV[2] ~= '' then
  entries = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
else
  entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', tonumber(ARGV[1]))
end
local n = 0
for _, e in ipairs(entries) do
  local fields = e[2]
  local msg = nil
  for j = 1, #fields, 2 do
    if fields[j] == 'm' then msg = fields[j + 1] end
  end
  if msg ~= nil then
    redis.call('XADD', KEYS[2], '*', 'm', msg)
    n = n + 1
  end
  redis.call('XDEL', KEYS[1], e[1])
end
return n
