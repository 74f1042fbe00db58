-- beat_claim: claim slots of one periodic entry and enqueue their runs, in one atomic step.
--
-- KEYS[1]  celeriac:{queue}:beat     hash of periodic entry state, per entry <name>:
--            d:<name>   active definition digest ("paused:<digest>" while paused)
--            l:<name>   last claimed slot (ms); lp:<name> the one before it
--            p:<name>   the last enqueued message (withdrawn when the definition changes)
--          bounded by the number of entries (beat_register.lua removes an entry's fields)
-- KEYS[2]  celeriac:{queue}:delayed  sorted set, member = encoded message, score = due time (ms)
-- ARGV[1]  wake channel of the queue (told when a message becomes the earliest one)
-- ARGV[2]  entry name
-- ARGV[3]  digest of the caller's definition of the entry
-- ARGV[4]  steady state: the slot the caller saw before these ('' = none); if the last claimed slot
--          is older, slots were missed and nothing is claimed (reply -2): the caller applies the
--          entry's catch-up policy and calls again with ARGV[5]
-- ARGV[5]  catch-up call: the last claimed slot the caller read ('nil' = never claimed), which must
--          not have moved since ('' in the steady state)
-- ARGV[6]  now, ms (the caller's clock; only used with ARGV[7])
-- ARGV[7]  grace in ms: a slot older than now - grace is passed over without running (0 = no limit)
-- ARGV[8..] pairs: slot (ms, ascending), encoded message (its task id derives from entry and slot)
--
-- Why one script: the compare-and-set of the last claimed slot and the enqueue are one step, so any
-- number of schedulers may call it for the same slot: exactly one enqueues, and a claimed slot is
-- never lost (no lock, no leader). The run waits in the delayed set and is promoted at its due time.
-- Returns {status, last}: status >= 0 is the number of runs enqueued (0: already claimed by someone),
-- -1 the caller's definition is not the active one (changed, removed or paused), -2 slots were
-- missed (catch-up needed), -3 the last slot moved since the caller read it (call again).
local name = ARGV[2]
local active = redis.call('HGET', KEYS[1], 'd:' .. name)
local last = tonumber(redis.call('HGET', KEYS[1], 'l:' .. name) or '')
if active ~= ARGV[3] then return {-1, last or -1} end
if ARGV[5] ~= '' then
  local expected = tonumber(ARGV[5])
  if last ~= expected then return {-3, last or -1} end
elseif last ~= nil and ARGV[4] ~= '' and last < tonumber(ARGV[4]) then
  return {-2, last}
end
local now_ms, grace_ms = tonumber(ARGV[6]), tonumber(ARGV[7])
local head_before = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')[2]
local previous, claimed, moved = last, 0, false
for i = 8, #ARGV, 2 do
  local slot = tonumber(ARGV[i])
  if last == nil or slot > last then
    if grace_ms <= 0 or slot >= now_ms - grace_ms then
      redis.call('ZADD', KEYS[2], slot, ARGV[i + 1])
      redis.call('HSET', KEYS[1], 'p:' .. name, ARGV[i + 1])
      claimed = claimed + 1
    end
    previous, last, moved = last, slot, true
  end
end
if moved then
  redis.call('HSET', KEYS[1], 'l:' .. name, last)
  if previous ~= nil then redis.call('HSET', KEYS[1], 'lp:' .. name, previous) end
end
if claimed > 0 then
  local head_after = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')[2]
  if head_before == nil or tonumber(head_after) < tonumber(head_before) then
    redis.call('PUBLISH', ARGV[1], head_after)
  end
end
return {claimed, last or -1}
