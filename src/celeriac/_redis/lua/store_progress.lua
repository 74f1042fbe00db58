-- store_progress: record a running task's latest update_state and tell get(on_message=...) waiters.
--
-- KEYS[1]  celeriac:result:<task id>           the task's final result (list, see store_result.lua)
-- KEYS[2]  celeriac:{celeriac:result:<task id>}:progress  the latest progress record; also the
--          pub/sub channel; in KEYS[1]'s hash slot (its tag is KEYS[1]'s name: keys.slot_mate)
-- ARGV[1]  encoded progress record
-- ARGV[2]  time to live in ms (the task's result TTL)
--
-- Why a script: progress must never replace a final state, and a late progress write (throttled, so
-- it may be sent after the task finished) must not be seen as the task's state. Progress lives in its
-- own key, so a final record is never overwritten; this check also keeps a stale progress record
-- from being stored (or announced) once the final one exists. Returns 1 when stored, 0 otherwise.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', tonumber(ARGV[2]))
redis.call('PUBLISH', KEYS[2], ARGV[1])
return 1
