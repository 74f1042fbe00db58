-- find: the log entries holding the records of one task id, found through the lookup index
-- (celeriac.monitor.reader.MonitorReader.task). Reads one bounded range of the index per call (the
-- reader walks the index in ranges, newest first), so that a lookup never holds Redis for long.
-- Every key is in the queue's hash slot ({queue}).
--
-- KEYS[1]  celeriac:{q}:m:ix    string: 4-byte lookup keys of the records, in order
-- KEYS[2]  celeriac:{q}:m:ixh   hash: n = records written so far, base = number of m:ix's first key
-- KEYS[3]  celeriac:{q}:m:ents  sorted set: log entry id -> number of its first record
-- ARGV[1]  the id's lookup key (4 bytes, celeriac.monitor.keys.id_keys)
-- ARGV[2]  the record number to stop at (exclusive; clamped to n)
-- ARGV[3]  how many records to look at, at most (the range ends at ARGV[2], starts no lower than base)
-- Returns {base, n, entry ids}: the entries of the candidates (records whose key matches: the reader
-- compares the ids themselves), newest first, each once.
local counters = redis.call('HGETALL', KEYS[2])
local ixh = {}
for j = 1, #counters, 2 do ixh[counters[j]] = tonumber(counters[j + 1]) end
local n, base = ixh['n'] or 0, ixh['base'] or 0
local to = math.min(tonumber(ARGV[2]), n)
local from = math.max(to - tonumber(ARGV[3]), base)
local found = {}
if to <= from then return {base, n, found} end
local keys = redis.call('GETRANGE', KEYS[1], (from - base) * 4, (to - base) * 4 - 1)
local needle = ARGV[1]
local hits = {}
local p = 1
while true do
  local s = string.find(keys, needle, p, true)
  if not s then break end
  if (s - 1) % 4 == 0 then
    table.insert(hits, from + (s - 1) / 4)
    p = s + 4
  else
    p = s + 1
  end
end
local last = nil
for h = #hits, 1, -1 do
  local e = redis.call('ZRANGE', KEYS[3], hits[h], '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, 1)[1]
  if e and e ~= last then
    table.insert(found, e)
    last = e
  end
end
return {base, n, found}
