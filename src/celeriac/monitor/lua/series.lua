-- series: read the same fields of many rollup hashes of one queue in one call (celeriac.monitor.reader).
-- Read-only. One call per queue instead of one HMGET per bucket: a week of hourly buckets is 168
-- hashes, and the client's per-command cost, not Redis, dominated the chart.
--
-- KEYS[1..N]  celeriac:{q}:m:roll:<res>:<bucket>  rollup hashes of one queue (one slot), oldest first
-- ARGV[1..F]  the fields to read from each
-- Returns N arrays of F values (nil where a hash or field is missing).
local out = {}
for k = 1, #KEYS do
  local values = {}
  for first = 1, #ARGV, 1000 do  -- a handful of fields in practice; chunked all the same
    local fields = {}
    for i = first, math.min(first + 999, #ARGV) do fields[#fields + 1] = ARGV[i] end
    for _, v in ipairs(redis.call('HMGET', KEYS[k], unpack(fields))) do values[#values + 1] = v end
  end
  out[k] = values
end
return out
