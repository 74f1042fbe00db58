-- mark_revoked: store a REVOKED result record for a task, unless it already has a final result.
--
-- KEYS[1]  celeriac:result:<task id>  list holding one encoded result record (see store_result.lua)
-- ARGV[1]  encoded REVOKED record
-- ARGV[2]  time to live in ms
--
-- A task that already finished keeps its outcome (a revoke after the fact changes nothing); a waiter
-- blocked in get() wakes with TaskRevokedError. Returns 1 when the record was stored, 0 otherwise.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
