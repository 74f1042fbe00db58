-- record: write recorded task outcomes of one queue (celeriac.monitor.recorder): one log entry per
-- chunk of at most 1,000 records, several entries in one call (the bounds, trims and TTLs once per call).
-- Every key is in the queue's hash slot ({queue}); see celeriac/monitor/keys.py for the layout.
--
-- KEYS[1]  celeriac:{q}:m:log      stream: one entry per chunk, fields w (worker), r (records), p (previous
--          outcomes of retried tasks: "index:score:index", see below)
-- KEYS[2]  celeriac:{q}:m:ids      sorted set: task id -> score of its latest log entry (ms*4096+seq)
-- KEYS[3]  celeriac:{q}:m:fail     stream: one entry per failure, fields w, r (one record, full)
-- KEYS[4]  celeriac:{q}:m:fgroups  hash: "name\0exc" -> count, "name\0exc\0last" -> latest fail entry id
-- KEYS[5]  celeriac:{q}:m:total    hash: lifetime counters (fields as the rollups)
-- KEYS[6]  celeriac:{q}:m:fids     sorted set: task id -> score of its latest failure entry
-- KEYS[6+i] celeriac:{q}:m:roll:<res>:<bucket>  rollup hashes, i = 1..R
-- KEYS[7+R] celeriac:{q}:m:rel     sorted set, scores 0: workflow links read by prefix (ZRANGEBYLEX)
-- KEYS[8+R] celeriac:{q}:m:relt    sorted set: the same members by log entry score (trims m:rel)
-- ARGV[1]  worker id
-- ARGV[2]  C, the number of log entries written (chunks of at most 1,000 records)
-- ARGV[3]  the records' task ids, in order: a msgpack array of C arrays, one per entry (the records
--          themselves are not decoded here)
-- ARGV[11] positions (0-based, counted over all C entries) of retried tasks in ARGV[3] (msgpack
--          array, or ""): only those look up their previous entry, which links a task's outcomes into
--          its timeline
-- ARGV[4]  most task ids kept (log and ids are trimmed to it)
-- ARGV[5]  most failures kept (approximate MAXLEN)
-- ARGV[6]  retention cut-off in epoch ms: older entries go
-- ARGV[7]  TTL in seconds of log, ids, fail, fgroups, total (refreshed on every write)
-- ARGV[8]  F, number of failure records
-- ARGV[9]  R, number of rollup keys (KEYS[7..6+R])
-- ARGV[10] T, number of (field, increment) pairs for KEYS[5]
-- ARGV[12] workflow links (m:rel members) by entry: a msgpack array of C arrays, or "" when there is
--          none: written to m:rel, and to m:relt with their entry's score, both trimmed like m:ids
--          (cap ARGV[4], retention ARGV[6]; at most 1,000 per entry removed per call) and given the
--          TTL ARGV[7]
-- ARGV[13..12+C]  the records of each entry (msgpack arrays), stored as its field r
-- ARGV[13+C..]  F quadruples (task id, record, group, message); then for each rollup key:
--          ttl_s, n, then n pairs (field, increment); then T pairs (field, increment).
-- Every list is bounded by the call's size (the recorder splits big writes): no unpack() of a long list.
-- Returns the id of the last log entry written.
local f, r, t = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local max_ids, max_fail, min_ms, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local decode = cmsgpack.unpack
local c = tonumber(ARGV[2])
local id_lists = decode(ARGV[3])
local links = nil
if ARGV[12] ~= '' then links = decode(ARGV[12]) end
local i = 13 + c

-- previous outcomes of retried tasks, which link a task's outcomes into its timeline: in the same
-- entry ("k:0:j", index j of that entry) or in an earlier one ("k:score:-1", looked up before the
-- task's id moves to this entry; an earlier entry of this call is indexed by then)
local retried = {}
if ARGV[11] ~= '' then
  for _, k in ipairs(decode(ARGV[11])) do retried[k] = true end
end
local rel, relt = KEYS[7 + r], KEYS[8 + r]
local id, score
local base = 0
for e = 1, c do
  local ids = id_lists[e]
  local n = #ids
  local prev, last_at = {}, {}
  for k = 0, n - 1 do
    local tid = ids[k + 1]
    if retried[base + k] then
      if last_at[tid] then
        table.insert(prev, k .. ':0:' .. last_at[tid])
      else
        local s = redis.call('ZSCORE', KEYS[2], tid)
        if s then table.insert(prev, k .. ':' .. s .. ':-1') end
      end
    end
    last_at[tid] = k
  end
  base = base + n

  if #prev > 0 then
    id = redis.call('XADD', KEYS[1], '*', 'w', ARGV[1], 'r', ARGV[12 + e], 'p', table.concat(prev, ' '))
  else
    id = redis.call('XADD', KEYS[1], '*', 'w', ARGV[1], 'r', ARGV[12 + e])
  end
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  local s = tonumber(ms) * 4096 + math.min(tonumber(seq), 4095)
  score = string.format('%.0f', s)
  -- every id moves to this entry's score, in chunks (Lua unpacks at most ~8,000 values at once)
  for first = 1, #ids, 500 do
    local zargs = {}
    for i = first, math.min(first + 499, #ids) do zargs[#zargs + 1] = score; zargs[#zargs + 1] = ids[i] end
    redis.call('ZADD', KEYS[2], unpack(zargs))
  end
  -- workflow links (only workflow tasks have any): both ways, by this entry's score
  local members = links and links[e] or {}
  for first = 1, #members, 500 do
    local lex, timed = {}, {}
    for j = first, math.min(first + 499, #members) do table.insert(lex, 0); table.insert(lex, members[j]) end
    redis.call('ZADD', rel, unpack(lex))
    for j = first, math.min(first + 499, #members) do table.insert(timed, score); table.insert(timed, members[j]) end
    redis.call('ZADD', relt, unpack(timed))
  end
end

-- bounds: a cap in task ids and a retention in time, for the log and its index alike
local card = redis.call('ZCARD', KEYS[2])
if card > max_ids then
  local cut = redis.call('ZRANGE', KEYS[2], card - max_ids, card - max_ids, 'WITHSCORES')
  if cut[2] then
    local cs = tonumber(cut[2])
    local cms = math.floor(cs / 4096)
    redis.call('XTRIM', KEYS[1], 'MINID', cms .. '-' .. (cs - cms * 4096))
  end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, card - max_ids - 1)
end
redis.call('XTRIM', KEYS[1], 'MINID', '~', min_ms)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('(%.0f', min_ms * 4096))
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)

-- failures: the full record, and the count and latest entry of its (task name, exception type) group
if f > 0 then
  for k = 0, f - 1 do
    local fid = redis.call('XADD', KEYS[3], 'MAXLEN', '~', max_fail, '*', 'w', ARGV[1], 'r', ARGV[i + 1],
      'm', ARGV[i + 3])
    local fms, fseq = string.match(fid, '^(%d+)-(%d+)$')
    redis.call('ZADD', KEYS[6], string.format('%.0f', tonumber(fms) * 4096 + math.min(tonumber(fseq), 4095)),
      ARGV[i])
    local group = ARGV[i + 2]
    if redis.call('HEXISTS', KEYS[4], group) == 0 and redis.call('HLEN', KEYS[4]) >= 4000 then
      group = string.match(group, '^[^%z]*') .. '\0(other)'
    end
    redis.call('HINCRBY', KEYS[4], group, 1)
    redis.call('HSET', KEYS[4], group .. '\0last', fid)
    i = i + 4
  end
  local fcard = redis.call('ZCARD', KEYS[6])
  if fcard > max_fail then redis.call('ZREMRANGEBYRANK', KEYS[6], 0, fcard - max_fail - 1) end
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', string.format('(%.0f', min_ms * 4096))
  redis.call('EXPIRE', KEYS[6], ttl)
  redis.call('XTRIM', KEYS[3], 'MINID', '~', min_ms)
  redis.call('EXPIRE', KEYS[3], ttl)
  redis.call('EXPIRE', KEYS[4], ttl)
end

-- rollups: per-minute / hour / day counters and runtime histograms
for k = 1, r do
  local key_ttl, nf = ARGV[i], tonumber(ARGV[i + 1])
  i = i + 2
  for _ = 1, nf do
    redis.call('HINCRBY', KEYS[6 + k], ARGV[i], ARGV[i + 1])
    i = i + 2
  end
  redis.call('EXPIRE', KEYS[6 + k], key_ttl)
end
for _ = 1, t do
  redis.call('HINCRBY', KEYS[5], ARGV[i], ARGV[i + 1])
  i = i + 2
end
if t > 0 then redis.call('EXPIRE', KEYS[5], ttl) end
-- the workflow links' bounds
if links then
  -- the oldest links go with the cap and the retention, at most 1,000 per entry written
  local over = math.min(redis.call('ZCARD', relt) - max_ids, 1000 * c)
  if over > 0 then
    for _, m in ipairs(redis.call('ZRANGE', relt, 0, over - 1)) do redis.call('ZREM', rel, m) end
    redis.call('ZREMRANGEBYRANK', relt, 0, over - 1)
  end
  local cut = string.format('(%.0f', min_ms * 4096)
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', relt, '-inf', cut, 'LIMIT', 0, 1000 * c)) do
    redis.call('ZREM', rel, m)
    redis.call('ZREM', relt, m)
  end
  redis.call('EXPIRE', rel, ttl)
  redis.call('EXPIRE', relt, ttl)
end
return id
