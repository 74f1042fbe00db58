-- rate_acquire: reserve start times for tasks under one rate limit (GCRA, one key per limiter).
--
-- KEYS[1]  celeriac:{queue}:rl:<task>[:<key>]  string: the theoretical arrival time (TAT, us) of the
--          next start; TTL: until the TAT has passed plus one interval (then the limiter is idle)
-- ARGV[1]  emission interval in microseconds (period / rate: 20000 for "50/s"; microseconds, so that
--          rates above 1000/s keep their precision)
-- ARGV[2]  burst: starts allowed back to back (1 = evenly spaced, as Celery)
-- ARGV[3]  slack in microseconds: a start due within this much of now starts now (handing a task back
--          to wait a few milliseconds costs more than it keeps: the delayed set's own precision)
-- ARGV[4..] one expiry per task (epoch ms, 0 = none), in the order the tasks arrived
--
-- GCRA keeps one number per limiter and never refuses: a task over the rate gets the next free start
-- time, so waiting tasks get consecutive, evenly spaced times in arrival order (FIFO), and each runs
-- once at its time without asking again (rate_park.lua hands it back, marked with that time). A task
-- whose time would come after its expiry reserves nothing: it could only run late. One call serves a
-- whole fetch of a worker (its tasks of this limiter).
-- Returns one value per task: 0 = start now, > 0 = its reserved start time (ms, rounded up),
-- -1 = expired.
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local interval = tonumber(ARGV[1])
local tau = (tonumber(ARGV[2]) - 1) * interval
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now_us then tat = now_us end
local slack = tonumber(ARGV[3])
local out = {}
for i = 4, #ARGV do
  local allow_at = tat - tau
  local expires = tonumber(ARGV[i]) * 1000
  if allow_at > now_us + slack and expires > 0 and allow_at > expires then
    out[#out + 1] = -1
  else
    tat = tat + interval
    out[#out + 1] = allow_at <= now_us + slack and 0 or math.ceil(allow_at / 1000)
  end
end
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.max(1, math.ceil((tat - now_us + interval) / 1000)))
return out
