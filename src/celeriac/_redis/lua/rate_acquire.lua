-- rate_acquire: reserve start times (turns) for tasks under one rate limit (GCRA, one limiter).
--
-- KEYS[1]  celeriac:{queue}:rl:<task>[:<key>]        string: the theoretical arrival time (TAT, us) of
--          the next start; TTL: until the TAT has passed plus one interval (then the limiter is idle)
-- KEYS[2]  celeriac:{queue}:rs:<task>[:<key>]  string: how far (us) the line slipped
--          (rate_check.lua raises it when the head of the line starts late); TTL an hour
-- KEYS[3]  celeriac:{queue}:rt:<task>[:<key>]  sorted set, the line: the turns handed out and not
--          started yet, member = score = the turn (us, reserved time minus the shift then); bounded by
--          the tasks waiting; TTL an hour
-- ARGV[1]  emission interval in microseconds (period / rate: 20000 for "50/s"; microseconds, so that
--          rates above 1000/s keep their precision)
-- ARGV[2]  burst: starts allowed back to back (1 = evenly spaced, as Celery)
-- ARGV[3]  slack in microseconds: a start due within this much of now starts now (handing a task back
--          to wait a few milliseconds costs more than it keeps: the delayed set's own precision)
-- ARGV[4]  a turn whose time is older than this (us) was lost (its task was purged, or its worker died
--          between the reservation and the hand-back): it no longer holds the line
-- ARGV[5..] one expiry per task (epoch ms, 0 = none), in the order the tasks arrived
--
-- GCRA keeps one number per limiter and never refuses: a task over the rate gets the next free start
-- time, so waiting tasks get consecutive, evenly spaced turns in arrival order (FIFO). Its turn stays
-- its place in the line until it starts (rate_check.lua), even if it is reached late. A new task starts
-- at once only when the rate allows it and nobody waits: otherwise it would overtake a waiting task
-- that is late. A task whose time would come after its expiry reserves nothing: it could only run late.
-- One call serves a whole fetch of a worker (its tasks of this limiter).
-- Returns {shift (us), then one value per task: 0 = start now, > 0 = its reserved start time (us; its
-- turn is that minus the shift), -1 = expired}.
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local interval = tonumber(ARGV[1])
local tau = (tonumber(ARGV[2]) - 1) * interval
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now_us then tat = now_us end
local slack = tonumber(ARGV[3])
local shift = tonumber(redis.call('GET', KEYS[2]) or '0')
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', string.format('(%d', now_us - tonumber(ARGV[4]) - shift))
local waiting = redis.call('ZCARD', KEYS[3])
local out = {shift}
for i = 5, #ARGV do
  local allow_at = tat - tau
  local expires = tonumber(ARGV[i]) * 1000
  if allow_at <= now_us + slack and waiting == 0 then
    tat = tat + interval
    out[#out + 1] = 0
  elseif expires > 0 and allow_at > now_us + slack and allow_at > expires then
    out[#out + 1] = -1
  else
    tat = tat + interval
    local turn = string.format('%d', allow_at - shift)
    redis.call('ZADD', KEYS[3], turn, turn)
    waiting = waiting + 1
    out[#out + 1] = allow_at
  end
end
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.max(1, math.ceil((tat - now_us + interval) / 1000)))
if waiting > 0 then
  redis.call('PEXPIRE', KEYS[3], 3600000)
  if shift > 0 then redis.call('PEXPIRE', KEYS[2], 3600000) end
end
return out
