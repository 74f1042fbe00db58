-- store_result: store one task outcome for callers of AsyncResult.get().
--
-- KEYS[1]  celeriac:result:<task id>  list holding exactly one encoded result record; TTL ARGV[2]
-- ARGV[1]  encoded result record
-- ARGV[2]  time to live in ms
--
-- Atomic so that a waiter (blocked in BLMOVE on the key) never sees the key without its TTL, and a
-- redelivered task's second outcome replaces the first instead of piling up.
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -1, -1)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
