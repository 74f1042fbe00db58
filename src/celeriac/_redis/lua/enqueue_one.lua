-- enqueue_one: send one message that is unique, prioritized, or both (plain sends are one XADD).
--
-- KEYS[1]  celeriac:{queue}:ready or celeriac:{queue}:p<n>:ready    stream of the message's level
-- KEYS[2]  celeriac:{queue}:delayed or celeriac:{queue}:p<n>:delayed  delayed set of that level
-- KEYS[3]  celeriac:{queue}:levels  set of the priority levels (1..9) used on the queue
-- KEYS[4]  optional: celeriac:{queue}:unique:<key>  lock of a unique task: holds the task id
-- ARGV[1]  priority level (0: the queue's own stream)
-- ARGV[2]  consumer group
-- ARGV[3]  wake channel of the queue
-- ARGV[4]  delay in ms, or ''
-- ARGV[5]  eta in ms (epoch), or ''; at most one of ARGV[4], ARGV[5] is non-empty
-- ARGV[6]  encoded message
-- ARGV[7]  task id
-- ARGV[8]  lock time to live in ms (with KEYS[4])
--
-- Why one script: the uniqueness decision and the enqueue are one step, so two producers racing to
-- send the same task queue it once. A level's stream is created with its consumer group here, and
-- the first use of a level is announced on the wake channel ('levels'), so that workers start reading
-- it without ever asking per fetch. Returns the id of the task now queued: ARGV[7], or the id of the
-- equal task that holds the lock.
if #KEYS >= 4 then
  local holder = redis.call('GET', KEYS[4])
  if holder then return holder end
  redis.call('SET', KEYS[4], ARGV[7], 'PX', tonumber(ARGV[8]))
end
local level = tonumber(ARGV[1])
if level > 0 then
  if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[2], '0', 'MKSTREAM')
  end
  if redis.call('SADD', KEYS[3], level) == 1 then
    redis.call('PUBLISH', ARGV[3], 'levels')
  end
end
if ARGV[4] == '' and ARGV[5] == '' then
  redis.call('XADD', KEYS[1], '*', 'm', ARGV[6])
  return ARGV[7]
end
local due
if ARGV[4] ~= '' then
  local now = redis.call('TIME')
  due = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[4])
else
  due = tonumber(ARGV[5])
end
local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
redis.call('ZADD', KEYS[2], due, ARGV[6])
if head[2] == nil or due < tonumber(head[2]) then
  redis.call('PUBLISH', ARGV[3], due)
end
return ARGV[7]
