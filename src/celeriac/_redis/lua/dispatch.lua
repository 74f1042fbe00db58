-- dispatch: send workflow successors (the next step of a chain, callbacks, errbacks, chord header
-- members) to one queue, each at most once.
--
-- KEYS[1]  celeriac:{queue}:ready    stream of ready messages (field "m" = encoded message)
-- KEYS[2]  celeriac:{queue}:delayed  sorted set of messages waiting for their due time
-- KEYS[3]  celeriac:{queue}:fired    sorted set: dispatch key -> expiry (ms since epoch); bounded by
--                                    the window ARGV[2] (expired keys are removed on every call)
-- ARGV[1]  wake channel of the queue (published to when a delayed message becomes the earliest)
-- ARGV[2]  dedup window in ms (the key's TTL too)
-- ARGV[3..] groups of four: dispatch key (the successor's task id), delay_ms, eta_ms, message;
--          delay_ms and eta_ms both empty for a ready message
--
-- Why: a task that ran twice (its worker died after dispatching, before its ack) dispatches the
-- same successors again, with the same frozen ids; the second dispatch of a key is skipped, so a
-- successor never runs twice because its predecessor did.
-- Returns the number of messages sent.
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now_ms)
local head_before = nil
local sent = 0
for i = 3, #ARGV, 4 do
  if redis.call('ZADD', KEYS[3], 'NX', now_ms + window, ARGV[i]) == 1 then
    if ARGV[i + 1] == '' and ARGV[i + 2] == '' then
      redis.call('XADD', KEYS[1], '*', 'm', ARGV[i + 3])
    else
      if head_before == nil then
        local h = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
        head_before = tonumber(h[2] or '-1')
      end
      local due
      if ARGV[i + 1] ~= '' then due = now_ms + tonumber(ARGV[i + 1]) else due = tonumber(ARGV[i + 2]) end
      redis.call('ZADD', KEYS[2], due, ARGV[i + 3])
      if head_before == -1 or due < head_before then
        redis.call('PUBLISH', ARGV[1], due)
        head_before = due
      end
    end
    sent = sent + 1
  end
end
redis.call('PEXPIRE', KEYS[3], window)
return sent
