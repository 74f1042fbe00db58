-- series: read the same fields of many rollup hashes of one queue in one call (celeriac.monitor.reader).
-- Read-only. One call per queue instead of one HMGET per bucket: a week of hourly buckets is 168
-- hashes, and the client's per-command cost, not Redis, dominated the chart.
--
-- KEYS[1..N]  celeriac:{q}:m:roll:<res>:<bucket>  rollup hashes of one queue (one slot), oldest first
-- ARGV[1..F]  the fields to read from each
-- Returns N arrays of F values (nil where a hash or field is missing).
local out = {}
for i = 1, #KEYS do
  out[i] = redis.call('HMGET', KEYS[i], unpack(ARGV))
end
return out
