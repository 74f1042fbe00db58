-- settle: record the outcomes of a batch of deliveries of one queue, but only those this consumer
-- still owns (fencing): a worker whose lease expired and whose message was reclaimed must not ack it.
--
-- KEYS[1]  celeriac:{queue}:ready    stream of ready messages; consumer group ARGV[1]
-- KEYS[2]  celeriac:{queue}:delayed  sorted set of messages waiting for their due time (retries)
-- KEYS[3]  celeriac:{queue}:dead     stream of dead letters (fields m, reason, time), capped
-- ARGV[1]  consumer group
-- ARGV[2]  consumer (this worker)
-- ARGV[3]  max entries of this consumer's pending list to read (its concurrency, with margin)
-- ARGV[4]  dead-letter cap (approximate MAXLEN)
-- ARGV[5]  wake channel of the queue (published to when a retry becomes the earliest delayed message)
-- ARGV[6]  plain acks, packed in one string: "id deliveries id deliveries ..." (may be empty). One
--          argument for the whole batch: packing three arguments per ack cost the worker more than
--          the script costs Redis.
-- ARGV[7..] other records, each starting with a kind:
--   'a', id, deliveries                             ack
--   'r', id, deliveries, delay_ms, eta_ms, message  ack and park a retry (delay_ms or eta_ms non-empty)
--   'd', id, deliveries, message, reason            ack and dead-letter
--
-- "Owns" means: the entry is in this consumer's pending list with the same delivery count the
-- consumer saw when it took it. Returns the ids that were NOT owned (fenced out).
local owned = {}
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', tonumber(ARGV[3]), ARGV[2])
for _, p in ipairs(pending) do owned[p[1]] = p[4] end

-- the clock is read only when a retry or a dead letter needs it (TIME counts as a command)
local now_ms = nil
local function clock()
  if now_ms == nil then
    local now = redis.call('TIME')
    now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  end
  return now_ms
end
local acked, fenced = {}, {}
for id, deliveries in string.gmatch(ARGV[6], '(%S+) (%d+)') do
  if owned[id] == tonumber(deliveries) then table.insert(acked, id) else table.insert(fenced, id) end
end
local head_before = nil
local i = 7
while i <= #ARGV do
  local kind, id, deliveries = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local mine = owned[id] == deliveries
  if mine then table.insert(acked, id) else table.insert(fenced, id) end
  if kind == 'a' then
    i = i + 3
  elseif kind == 'r' then
    if mine then
      if head_before == nil then
        local h = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
        head_before = tonumber(h[2] or '-1')
      end
      local due
      if ARGV[i + 3] ~= '' then due = clock() + tonumber(ARGV[i + 3]) else due = tonumber(ARGV[i + 4]) end
      redis.call('ZADD', KEYS[2], due, ARGV[i + 5])
      if head_before == -1 or due < head_before then
        redis.call('PUBLISH', ARGV[5], due)
        head_before = due
      end
    end
    i = i + 6
  elseif kind == 'd' then
    if mine then
      redis.call('XADD', KEYS[3], 'MAXLEN', '~', tonumber(ARGV[4]), '*',
        'm', ARGV[i + 3], 'reason', ARGV[i + 4], 'time', clock())
    end
    i = i + 5
  else
    return redis.error_reply('settle: unknown record kind ' .. tostring(kind))
  end
end
if #acked > 0 then
  redis.call('XACK', KEYS[1], ARGV[1], unpack(acked))
  redis.call('XDEL', KEYS[1], unpack(acked))
end
return fenced
