-- record: write recorded task outcomes of one queue (celeriac.monitor.recorder): one log entry per
-- chunk of at most 1,000 records, several entries in one call (the bounds, trims and TTLs once per call).
-- Every key is in the queue's hash slot ({queue}); see celeriac/monitor/keys.py for the layout.
-- Nothing here costs Redis work per record (no per-record command, nothing decoded): the records
-- and their lookup keys arrive packed, and each is appended as it is.
--
-- KEYS[1]  celeriac:{q}:m:log      stream: one entry per chunk, fields w (worker), r (records)
-- KEYS[2]  celeriac:{q}:m:ix       string: the lookup keys of the records, 4 bytes each, in order
-- KEYS[3]  celeriac:{q}:m:ixh      hash: n = records written so far, base = number of m:ix's first key
-- KEYS[4]  celeriac:{q}:m:ents     sorted set: log entry id -> number of its first record
-- KEYS[5]  celeriac:{q}:m:fail     stream: one entry per failure, fields w, r (one record, full), m
-- KEYS[6]  celeriac:{q}:m:fgroups  hash: "name\0exc" -> count, "name\0exc\0last" -> latest fail entry id
-- KEYS[7]  celeriac:{q}:m:total    hash: lifetime counters (fields as the rollups)
-- KEYS[8]  celeriac:{q}:m:fids     sorted set: task id -> score of its latest failure entry
-- KEYS[8+i] celeriac:{q}:m:roll:<res>:<bucket>  rollup hashes, i = 1..R
-- KEYS[9+R] celeriac:{q}:m:rel     sorted set, scores 0: workflow links read by prefix (ZRANGEBYLEX)
-- KEYS[10+R] celeriac:{q}:m:relt   sorted set: the same members by log entry score (trims m:rel)
-- ARGV[1]  worker id
-- ARGV[2]  C, the number of log entries written (chunks of at most 1,000 records)
-- ARGV[3]  most records kept in the log (whole entries go, oldest first: it keeps up to one entry more)
-- ARGV[4]  most failures kept (approximate MAXLEN)
-- ARGV[5]  retention cut-off in epoch ms: older entries go
-- ARGV[6]  TTL in seconds of every key but the rollups (refreshed on every write)
-- ARGV[7]  F, number of failure records
-- ARGV[8]  R, number of rollup keys
-- ARGV[9]  T, number of (field, increment) pairs for KEYS[7]
-- ARGV[10] workflow links (m:rel members) by entry: a msgpack array of C arrays, or "" when there is
--          none: written to m:rel, and to m:relt with their entry's score, both trimmed with the log
--          (its cap and retention; at most 1,000 per entry written removed per call), TTL ARGV[6]
-- ARGV[11..10+C]  the records of each entry (msgpack arrays), stored as its field r
-- ARGV[11+C..10+2C]  the lookup keys of each entry's records (4 bytes each, in order), appended to m:ix
-- ARGV[11+2C..]  F quadruples (task id, record, group, message); then for each rollup key:
--          ttl_s, n, then n pairs (field, increment); then T pairs (field, increment).
-- Every list is bounded by the call's size (the recorder splits big writes): no unpack() of a long list.
-- Returns the id of the last log entry written.
local c, f, r, t = tonumber(ARGV[2]), tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local max_entries, max_fail, min_ms, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local links = nil
local decode = cmsgpack.unpack  -- (a msgpack decoder, not Lua's unpack)
if ARGV[10] ~= '' then links = decode(ARGV[10]) end
local i = 11 + 2 * c
local rel, relt = KEYS[9 + r], KEYS[10 + r]
local id
for e = 1, c do
  id = redis.call('XADD', KEYS[1], '*', 'w', ARGV[1], 'r', ARGV[10 + e])
  local ids = ARGV[10 + c + e]
  redis.call('APPEND', KEYS[2], ids)
  -- the entry's first record's number: what maps a position in m:ix to this entry
  local after = redis.call('HINCRBY', KEYS[3], 'n', #ids / 4)
  redis.call('ZADD', KEYS[4], after - #ids / 4, id)
  -- workflow links (only workflow tasks have any): both ways, by this entry's score
  local members = links and links[e] or {}
  if #members > 0 then
    local ms, seq = string.match(id, '^(%d+)-(%d+)$')
    local score = string.format('%.0f', tonumber(ms) * 4096 + math.min(tonumber(seq), 4095))
    for first = 1, #members, 500 do
      local lex, timed = {}, {}
      for j = first, math.min(first + 499, #members) do table.insert(lex, 0); table.insert(lex, members[j]) end
      redis.call('ZADD', rel, unpack(lex))
      for j = first, math.min(first + 499, #members) do table.insert(timed, score); table.insert(timed, members[j]) end
      redis.call('ZADD', relt, unpack(timed))
    end
  end
end

-- bounds: a cap in records and a retention in time. Whole entries go, oldest first: those wholly
-- before the cap's cut (the entry holding the cut stays: at most 1,000 per call), then those older
-- than the retention (at most 100 per call).
-- (HGETALL, ZRANGE ... BYSCORE and GET rather than HGET, ZRANGEBYSCORE and GETRANGE: the commands the
-- documented ACL already allows; see docs/security.md)
local counters = redis.call('HGETALL', KEYS[3])
local ixh = {}
for j = 1, #counters, 2 do ixh[counters[j]] = tonumber(counters[j + 1]) end
local n = ixh['n']
local before = redis.call('ZRANGE', KEYS[4], '-inf', n - max_entries, 'BYSCORE', 'LIMIT', 0, 1001)
local gone = {}
for j = 1, #before - 1 do gone[j] = before[j] end
local old = redis.call('ZRANGE', KEYS[4], #gone, #gone + 99)
for _, e in ipairs(old) do
  if tonumber(string.match(e, '^(%d+)')) >= min_ms then break end
  table.insert(gone, e)
end
if #gone > 0 then
  local last = gone[#gone]
  local ms, seq = string.match(last, '^(%d+)-(%d+)$')
  redis.call('XTRIM', KEYS[1], 'MINID', ms .. '-' .. (tonumber(seq) + 1))
  redis.call('ZREMRANGEBYRANK', KEYS[4], 0, #gone - 1)
end
-- m:ix is cut from the front once half of it belongs to entries gone (a copy of what is kept, so
-- each key is copied about once)
local first = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
local live = n
if first[2] then live = tonumber(first[2]) end
local base = ixh['base'] or 0
local dead = live - base
if dead > 0 and dead * 2 >= n - base then
  local kept = string.sub(redis.call('GET', KEYS[2]) or '', dead * 4 + 1)
  if #kept > 0 and dead < n - base then redis.call('SET', KEYS[2], kept) else redis.call('DEL', KEYS[2]) end
  redis.call('HSET', KEYS[3], 'base', live)
end
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('EXPIRE', KEYS[3], ttl)
redis.call('EXPIRE', KEYS[4], ttl)

-- failures: the full record, and the count and latest entry of its (task name, exception type) group
if f > 0 then
  for k = 0, f - 1 do
    local fid = redis.call('XADD', KEYS[5], 'MAXLEN', '~', max_fail, '*', 'w', ARGV[1], 'r', ARGV[i + 1],
      'm', ARGV[i + 3])
    local fms, fseq = string.match(fid, '^(%d+)-(%d+)$')
    redis.call('ZADD', KEYS[8], string.format('%.0f', tonumber(fms) * 4096 + math.min(tonumber(fseq), 4095)),
      ARGV[i])
    local group = ARGV[i + 2]
    if redis.call('HEXISTS', KEYS[6], group) == 0 and redis.call('HLEN', KEYS[6]) >= 4000 then
      group = string.match(group, '^[^%z]*') .. '\0(other)'
    end
    redis.call('HINCRBY', KEYS[6], group, 1)
    redis.call('HSET', KEYS[6], group .. '\0last', fid)
    i = i + 4
  end
  local fcard = redis.call('ZCARD', KEYS[8])
  if fcard > max_fail then redis.call('ZREMRANGEBYRANK', KEYS[8], 0, fcard - max_fail - 1) end
  redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', string.format('(%.0f', min_ms * 4096))
  redis.call('EXPIRE', KEYS[8], ttl)
  redis.call('XTRIM', KEYS[5], 'MINID', '~', min_ms)
  redis.call('EXPIRE', KEYS[5], ttl)
  redis.call('EXPIRE', KEYS[6], ttl)
end

-- rollups: per-minute / hour / day counters and runtime histograms
for k = 1, r do
  local key_ttl, nf = ARGV[i], tonumber(ARGV[i + 1])
  i = i + 2
  for _ = 1, nf do
    redis.call('HINCRBY', KEYS[8 + k], ARGV[i], ARGV[i + 1])
    i = i + 2
  end
  redis.call('EXPIRE', KEYS[8 + k], key_ttl)
end
for _ = 1, t do
  redis.call('HINCRBY', KEYS[7], ARGV[i], ARGV[i + 1])
  i = i + 2
end
if t > 0 then redis.call('EXPIRE', KEYS[7], ttl) end
-- the workflow links' bounds
if links then
  -- the oldest links go with the cap and the retention, at most 1,000 per entry written
  local over = math.min(redis.call('ZCARD', relt) - max_entries, 1000 * c)
  if over > 0 then
    for _, m in ipairs(redis.call('ZRANGE', relt, 0, over - 1)) do redis.call('ZREM', rel, m) end
    redis.call('ZREMRANGEBYRANK', relt, 0, over - 1)
  end
  local cut = string.format('(%.0f', min_ms * 4096)
  for _, m in ipairs(redis.call('ZRANGE', relt, '-inf', cut, 'BYSCORE', 'LIMIT', 0, 1000 * c)) do
    redis.call('ZREM', rel, m)
    redis.call('ZREM', relt, m)
  end
  redis.call('EXPIRE', rel, ttl)
  redis.call('EXPIRE', relt, ttl)
end
return id
