-- beat_poll: what a periodic scheduler checks each second when nothing is due, in one command.
--
-- KEYS[1]  celeriac:beat:rev  integer, bumped whenever an entry is added, changed, removed, paused or
--          resumed (no TTL: one small key)
-- Returns {revision, now_s, now_us}: the scheduler reloads the entries when the revision moved, and
-- keeps its clock in step with Redis's (one clock for every scheduler and worker).
local now = redis.call('TIME')
return {tonumber(redis.call('GET', KEYS[1]) or '0'), tonumber(now[1]), tonumber(now[2])}
