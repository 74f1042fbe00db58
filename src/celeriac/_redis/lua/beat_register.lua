-- beat_register: set, remove, pause or resume the active definition of one periodic entry.
--
-- KEYS[1]  celeriac:{queue}:beat     hash of periodic entry state (fields: see beat_claim.lua)
-- KEYS[2]  celeriac:{queue}:delayed  sorted set of delayed messages
-- ARGV[1]  entry name
-- ARGV[2]  mode: 'set' | 'remove' | 'pause' | 'resume'
-- ARGV[3]  'set': the new definition's digest (ignored by the other modes)
-- ARGV[4]  now, ms ('resume': slots up to now count as passed, so a pause is not caught up)
--
-- A run enqueued ahead for a definition that is replaced, removed or paused is withdrawn from the
-- delayed set (if it has not been promoted yet) and its slot unclaimed, so the old definition never
-- runs again and the new one may claim that slot. A paused entry stays paused when a deploy changes
-- its definition. Returns 1 when something changed, else 0.
local name, mode = ARGV[1], ARGV[2]
local d = redis.call('HGET', KEYS[1], 'd:' .. name)
local function withdraw()
  local pending = redis.call('HGET', KEYS[1], 'p:' .. name)
  if pending and redis.call('ZREM', KEYS[2], pending) == 1 then
    local lp = redis.call('HGET', KEYS[1], 'lp:' .. name)
    if lp then redis.call('HSET', KEYS[1], 'l:' .. name, lp) else redis.call('HDEL', KEYS[1], 'l:' .. name) end
  end
  redis.call('HDEL', KEYS[1], 'p:' .. name)
end
local paused = d and string.sub(d, 1, 7) == 'paused:'
if mode == 'set' then
  local wanted = ARGV[3]
  if paused then wanted = 'paused:' .. ARGV[3] end
  if d == wanted then return 0 end
  withdraw()
  redis.call('HSET', KEYS[1], 'd:' .. name, wanted)
  return 1
elseif mode == 'remove' then
  withdraw()
  return redis.call('HDEL', KEYS[1], 'd:' .. name, 'l:' .. name, 'lp:' .. name) > 0 and 1 or 0
elseif mode == 'pause' then
  if not d or paused then return 0 end
  withdraw()
  redis.call('HSET', KEYS[1], 'd:' .. name, 'paused:' .. d)
  return 1
elseif mode == 'resume' then
  if not paused then return 0 end
  redis.call('HSET', KEYS[1], 'd:' .. name, string.sub(d, 8))
  local last = tonumber(redis.call('HGET', KEYS[1], 'l:' .. name) or '')
  local now_ms = tonumber(ARGV[4])
  if last == nil or last < now_ms then
    if last ~= nil then redis.call('HSET', KEYS[1], 'lp:' .. name, last) end
    redis.call('HSET', KEYS[1], 'l:' .. name, now_ms)
  end
  return 1
end
return redis.error_reply('beat_register: unknown mode ' .. tostring(mode))
