-- unique_release: release the lock of a unique task that finished, if the lock is still its own.
--
-- KEYS[1]  celeriac:{queue}:unique:<key>  lock holding the task id (enqueue_one.lua)
-- ARGV[1]  task id
--
-- Compare and delete in one step: a lock that expired and was taken by a newer equal task stays.
-- Used for tasks acked before they ran (at-most-once); settle.lua releases the others with their ack.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
