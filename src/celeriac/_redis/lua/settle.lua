-- settle: record the outcomes of a batch of deliveries of one queue, but only those this consumer
-- still owns (fencing): a worker whose lease expired and whose message was reclaimed must not ack it,
-- nor overwrite the result that the delivery's new owner records.
--
-- KEYS[1]  celeriac:{queue}:ready    stream of ready messages; consumer group ARGV[1]
-- KEYS[2]  celeriac:{queue}:delayed  sorted set of messages waiting for their due time (retries)
-- KEYS[3]  celeriac:{queue}:dead     stream of dead letters (fields m, reason, time), capped
-- KEYS[4]  celeriac:{queue}:reclaimed  hash: consumer -> deliveries taken from it (reclaim.lua)
-- KEYS[4+i]  celeriac:result:<task id>  list holding one encoded result record (store_result.lua),
--          for the i-th result record of ARGV[8..]; TTL from the record. Result keys carry no queue
--          hash tag (a caller knows only the task id), so on Redis Cluster they are in other slots:
--          a broker on a cluster must not pass results here (see RedisBroker.stores_results_for).
-- ARGV[1]  consumer group
-- ARGV[2]  consumer (this worker)
-- ARGV[3]  max entries of this consumer's pending list to read (its concurrency, with margin)
-- ARGV[4]  dead-letter cap (approximate MAXLEN)
-- ARGV[5]  wake channel of the queue (published to when a retry becomes the earliest delayed message)
-- ARGV[6]  plain acks, packed in one string: "id deliveries id deliveries ..." (may be empty). One
--          argument for the whole batch: packing three arguments per ack cost the worker more than
--          the script costs Redis.
-- ARGV[7]  R, the number of result records that follow (0 when results are off)
-- ARGV[8..7+4R] result records, each: id, deliveries, ttl_ms, encoded record. Written to KEYS[4+i]
--          (before the acks) only when the delivery (id, deliveries) is owned, by the same test as its
--          ack: a consumer cut off from Redis whose delivery was reclaimed cannot overwrite the result
--          of the worker that owns it now.
-- ARGV[8+4R..] other records, each starting with a kind:
--   'r', id, deliveries, delay_ms, eta_ms, message  ack and park a retry (delay_ms or eta_ms non-empty)
--   'd', id, deliveries, message, reason            ack and dead-letter
--   'u', id, deliveries, task id, k                 release the lock KEYS[k] of a unique task (it
--                                                   finished) if it still holds this task id; the
--                                                   delivery's ack is a record of its own (or plain)
--
-- "Owns" means: the entry is in this consumer's pending list with the same delivery count the
-- consumer saw when it took it. Returns the ids that were NOT owned (fenced out).
--
-- Only reclaim.lua takes a delivery from its consumer (or counts it again), and it marks that consumer
-- in KEYS[4] (release.lua marks a consumer that hands deliveries back). A consumer never marked still
-- owns every delivery it was given, so its plain acks and their results need no look at the pending
-- list, which costs Redis more than the acks themselves. Retries and dead letters are always checked:
-- a flush repeated after a lost reply must not park or dead-letter twice. (A repeated flush of a
-- never-marked consumer writes its results again: the same records, so nothing changes.)
local nresults = tonumber(ARGV[7])
local first_record = 8 + 4 * nresults
local precise = #ARGV >= first_record or redis.call('HEXISTS', KEYS[4], ARGV[2]) == 1
local owned = {}
if precise then
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', tonumber(ARGV[3]), ARGV[2])
  for _, p in ipairs(pending) do owned[p[1]] = p[4] end
end

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
  if not precise or owned[id] == tonumber(deliveries) then
    table.insert(acked, id)
  else
    table.insert(fenced, id)
  end
end
-- results first (the outcome is recorded before the ack), each only for an owned delivery
for r = 1, nresults do
  local j = 8 + 4 * (r - 1)
  if not precise or owned[ARGV[j]] == tonumber(ARGV[j + 1]) then
    redis.call('RPUSH', KEYS[4 + r], ARGV[j + 3])
    redis.call('LTRIM', KEYS[4 + r], -1, -1)
    redis.call('PEXPIRE', KEYS[4 + r], ARGV[j + 2])
  end
end
local head_before = nil
local i = first_record
while i <= #ARGV do
  local kind, id, deliveries = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local mine = owned[id] == deliveries
  if kind ~= 'u' then
    if mine then table.insert(acked, id) else table.insert(fenced, id) end
  end
  if kind == 'u' then
    -- only the owner of the delivery releases: a worker cut off from Redis whose delivery runs
    -- elsewhere now must not let an equal task in while it runs
    if mine and redis.call('GET', KEYS[tonumber(ARGV[i + 4])]) == ARGV[i + 3] then
      redis.call('DEL', KEYS[tonumber(ARGV[i + 4])])
    end
    i = i + 5
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
-- XACK and XDEL take the ids in chunks: Lua's unpack() refuses more than about 8,000 values
-- (LUAI_MAXCSTACK), and a flush of a worker with high concurrency can ack more than that
local function chunk(ids, first)
  local out = {}
  for i = first, math.min(first + 999, #ids) do out[#out + 1] = ids[i] end
  return out
end
if #acked > 0 then
  for first = 1, #acked, 1000 do redis.call('XACK', KEYS[1], ARGV[1], unpack(chunk(acked, first))) end
  -- Acked entries leave the stream, so that it holds only waiting and running messages. XDEL costs
  -- Redis a scan inside the entry's stream node (about 2 us per entry, more than the rest of this
  -- script), but every entry older than the group's oldest pending one is done (delivered in id
  -- order, and no longer pending), so those go in whole nodes with one XTRIM MINID. Only entries
  -- acked out of order (newer than a message still running) are deleted one by one.
  local oldest = redis.call('XPENDING', KEYS[1], ARGV[1])[2]
  if not oldest then
    -- nothing running: every entry up to the group's last-delivered id is done. Trim exactly (not
    -- in whole nodes), so that an idle queue's stream holds exactly its waiting messages. Bounded by
    -- what the group delivered, never by the acked ids: after a Redis that lost the stream, those
    -- may come from its previous life.
    local last = nil
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
      local name, delivered = nil, nil
      for j = 1, #g, 2 do
        if g[j] == 'name' then name = g[j + 1] end
        if g[j] == 'last-delivered-id' then delivered = g[j + 1] end
      end
      if name == ARGV[1] then last = delivered end
    end
    if last and last ~= '0-0' then
      redis.call('XTRIM', KEYS[1], 'MINID', last)
      redis.call('XDEL', KEYS[1], last)
    end
  else
    redis.call('XTRIM', KEYS[1], 'MINID', '~', oldest)
    local oms, oseq = string.match(oldest, '^(%d+)-(%d+)$')
    oms, oseq = tonumber(oms), tonumber(oseq)
    local newer = {}
    for _, id in ipairs(acked) do
      local ms, seq = string.match(id, '^(%d+)-(%d+)$')
      ms, seq = tonumber(ms), tonumber(seq)
      if ms > oms or (ms == oms and seq > oseq) then table.insert(newer, id) end
    end
    for first = 1, #newer, 1000 do redis.call('XDEL', KEYS[1], unpack(chunk(newer, first))) end
  end
end
return fenced
