-- rate_acquire: reserve start times for tasks under one rate limit (GCRA, one key per limiter).
--
-- KEYS[1]  celeriac:{queue}:rl:<task>[:<key>]  string: the theoretical arrival time (TAT, ms) of the
--          next start; TTL: until the TAT has passed plus one interval (then the limiter is idle)
-- ARGV[1]  emission interval in ms (period / rate: 20 for "50/s")
-- ARGV[2]  burst: starts allowed back to back (1 = evenly spaced, as Celery)
-- ARGV[3..] one expiry per task (epoch ms, 0 = none), in the order the tasks arrived
--
-- GCRA keeps one number per limiter and never refuses: a task over the rate gets the next free start
-- time, so waiting tasks get consecutive, evenly spaced times in arrival order (FIFO), and each runs
-- once at its time without asking again (rate_park.lua hands it back, marked with that time). A task
-- whose time would come after its expiry reserves nothing: it could only run late. One call serves a
-- whole fetch of a worker (its tasks of this limiter).
-- Returns one value per task: 0 = start now, > 0 = its reserved start time (ms), -1 = expired.
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local interval = tonumber(ARGV[1])
local tau = (tonumber(ARGV[2]) - 1) * interval
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now_ms then tat = now_ms end
local out = {}
for i = 3, #ARGV do
  local allow_at = tat - tau
  local expires = tonumber(ARGV[i])
  if allow_at > now_ms and expires > 0 and allow_at > expires then
    out[#out + 1] = -1
  else
    tat = tat + interval
    out[#out + 1] = allow_at <= now_ms and 0 or allow_at
  end
end
redis.call('SET', KEYS[1], tat, 'PX', math.max(1, tat - now_ms + interval))
return out
