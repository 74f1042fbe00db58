-- rate_check: decide for tasks a rate limiter handed back with a turn, now that they are reached
-- again (their time came, or they were sent round to let an earlier turn pass): start, wait, expire.
--
-- KEYS[1]  celeriac:{queue}:rl:<task>[:<key>]        string: TAT (us) of the next free start (see
--          rate_acquire.lua)
-- KEYS[2]  celeriac:{queue}:rs:<task>[:<key>]  string: how far (us) the line slipped; TTL an hour
-- KEYS[3]  celeriac:{queue}:rt:<task>[:<key>]  sorted set of the turns not started yet (the
--          line, see rate_acquire.lua)
-- ARGV[1]  emission interval (us)
-- ARGV[2]  tolerance (us): the head of the line starting later than this past its time slips the whole
--          line by the excess
-- ARGV[3]  slack (us): a start due within this much of now starts now
-- ARGV[4]  a turn older than this (us, past its time) was lost (purged; a worker died between the
--          reservation and the hand-back): it no longer holds the line
-- ARGV[5]  longest wait (us) of a task sent round behind an earlier turn
-- ARGV[6..] pairs, in the order the tasks were fetched: the task's turn (us), its expiry (epoch ms,
--          0 = none)
--
-- Why: a task reached late (a stalled worker; or it came due while a flood was still being handed
-- back, so it waited behind the flood in the stream) must not ask for a new time: that sends it behind
-- every task reserved after it. Instead:
-- * a task's time is its turn plus the shift, so when the head of the line starts late, the whole line
--   slips by the lateness beyond the tolerance: every waiting task keeps its place and its spacing (no
--   burst above the rate), and a task reached before its (slipped) time waits again until it;
-- * a task starts only at the head of the line: one reached while an earlier turn still waits (that
--   turn is behind it in the stream, or in another worker's hands) is sent round again, due shortly
--   after now, so it comes back behind the earlier one; the longer the head is overdue, the longer it
--   waits (up to ARGV[5]): nothing spins on a stuck head;
-- * a task whose turn is no longer in the line (it started once and came back after its worker died,
--   or its turn was dropped as lost) is a new task again: it gets a new turn at the back (as
--   rate_acquire.lua), and never slips the line.
-- Returns one value per task: 0 = start now, -1 = expired (its time comes after its expiry; its turn is
-- given back), > 0 = hand it back to wait until this time (us), as a string: 'e<us>' when it is early
-- (its time, slipped, has not come), 'h<us>' when it waits for an earlier turn, 'n<us>:<turn>' with the
-- new turn of a task that had lost its own.
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local slack = tonumber(ARGV[3])
local longest = tonumber(ARGV[5])
local shift = tonumber(redis.call('GET', KEYS[2]) or '0')
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', string.format('(%d', now_us - tonumber(ARGV[4]) - shift))
local function set_tat(tat)
  redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.max(1, math.ceil((tat - now_us + interval) / 1000)))
end
local out = {}
for i = 6, #ARGV, 2 do
  local turn = tonumber(ARGV[i])
  local member = ARGV[i]
  local at = turn + shift
  local expires = tonumber(ARGV[i + 1]) * 1000
  if not redis.call('ZSCORE', KEYS[3], member) then
    local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
    if tat < now_us then tat = now_us end
    if tat <= now_us + slack and redis.call('ZCARD', KEYS[3]) == 0 then
      out[#out + 1] = 0
    else
      local new = string.format('%d', tat - shift)
      redis.call('ZADD', KEYS[3], new, new)
      redis.call('PEXPIRE', KEYS[3], 3600000)
      out[#out + 1] = string.format('n%d:%s', tat, new)
    end
    set_tat(tat + interval)
  elseif at > now_us + slack then
    if expires > 0 and at > expires then
      redis.call('ZREM', KEYS[3], member)
      out[#out + 1] = -1
    else
      out[#out + 1] = string.format('e%d', at)
    end
  else
    local head = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
    local head_turn = head[2] and tonumber(head[2])
    if head_turn ~= nil and head_turn < turn then
      -- due after now + slack, so after the head's own due time (it is earlier): promoted behind it.
      -- The distance in the line (a microsecond per millisecond) keeps several sent round in order.
      local overdue = now_us - (head_turn + shift)
      local wait = math.max(slack, math.min(longest, math.floor(overdue / 2)))
      out[#out + 1] = string.format('h%d', now_us + wait + math.floor((turn - head_turn) / 1000))
    else
      if now_us - at > tolerance then
        -- the head starts late: the line (and the next free start) slips by all of its lateness, so
        -- that the tasks behind it get the whole tolerance again: slipping only by the excess would
        -- leave them on its edge, and the hand-backs of a slip would make the next head late again
        local by = now_us - at
        shift = shift + by
        redis.call('SET', KEYS[2], string.format('%d', shift), 'PX', 3600000)
        local tat = tonumber(redis.call('GET', KEYS[1]) or '0') + by
        if tat < now_us then tat = now_us end
        set_tat(tat)
      end
      redis.call('ZREM', KEYS[3], member)
      out[#out + 1] = 0
    end
  end
end
return out
