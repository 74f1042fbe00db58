-- fetch_levels: take up to ARGV[3] ready messages of one queue's priority levels, highest first.
--
-- KEYS[i]  (i = 1..n) the level streams of one queue in priority order (celeriac:{queue}:ready
--          first, then celeriac:{queue}:p<n>:ready), all in the queue's hash slot
-- ARGV[1]  consumer group
-- ARGV[2]  consumer (this worker)
-- ARGV[3]  at most this many messages (the worker's free slots)
--
-- Why a script: reading level by level until the free slots are filled is strict priority in one
-- round trip, and a lower level is never leased while a higher one has messages waiting. (Non-blocking
-- reads: an idle worker then blocks on all levels with one XREADGROUP.) A level stream whose group is
-- missing (the stream was deleted and re-created without it) gets the group here.
-- Returns {i1, entries1, i2, entries2, ...}: the index of a stream in KEYS and its entries.
local out = {}
local left = tonumber(ARGV[3])
for i = 1, #KEYS do
  if left <= 0 then break end
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local reply = redis.pcall('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', left, 'STREAMS', KEYS[i], '>')
    if type(reply) == 'table' and reply.err then
      redis.call('XGROUP', 'CREATE', KEYS[i], ARGV[1], '0')
      reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', left, 'STREAMS', KEYS[i], '>')
    end
    if reply and reply[1] then
      local entries = reply[1][2]
      table.insert(out, i)
      table.insert(out, entries)
      left = left - #entries
    end
  end
end
return out
