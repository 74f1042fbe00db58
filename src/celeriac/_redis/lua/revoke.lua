-- revoke: record revoked task ids in the revocation stream that every worker mirrors.
--
-- KEYS[1]  celeriac:revoked  stream, one entry per revoked id (fields i = task id, t = '1' when the
--          running task must be terminated, s = signal name)
-- ARGV[1]  time to live of a revocation in ms: older entries are trimmed here, and the key expires
--          this long after the last revoke
-- ARGV[2]  at most this many entries are kept (approximate MAXLEN)
-- ARGV[3]  '1': terminate running tasks, '' otherwise
-- ARGV[4]  signal name for terminate (SIGTERM, SIGKILL, ...)
-- ARGV[5..] task ids (the caller sends at most 1,000 per call)
--
-- Why a stream: workers keep a local set in sync by reading only what they have not seen (XREAD from
-- their last id), so checking a task costs a set lookup and a revoke costs nothing per worker; the
-- entry id's time is the revocation's age, which is what the trim below and the workers' own expiry
-- use. Returns the id of the last entry added.
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local ttl_ms = tonumber(ARGV[1])
local last = ''
for i = 5, #ARGV do
  last = redis.call('XADD', KEYS[1], 'MAXLEN', '~', tonumber(ARGV[2]), '*', 'i', ARGV[i], 't', ARGV[3], 's', ARGV[4])
end
redis.call('XTRIM', KEYS[1], 'MINID', '~', now_ms - ttl_ms)
redis.call('PEXPIRE', KEYS[1], ttl_ms)
return last
