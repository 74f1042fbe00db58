-- control: send a command to live workers through the revocation stream they all follow.
--
-- KEYS[1]  celeriac:revoked  stream that every worker mirrors (see revoke.lua); a control entry has
--          fields c = command ('shutdown', 'heartbeat'), d = destination (worker ids joined by ',',
--          '' for every worker); it carries no task id, so the revocation mirror skips it
-- ARGV[1]  command
-- ARGV[2]  destination
-- ARGV[3]  at most this many entries are kept (approximate MAXLEN, the revocations' cap)
-- ARGV[4]  time to live in ms of the stream when it has none (the revocations' time to live)
--
-- Why the revocation stream: every worker already follows it with a blocking read in its control
-- loop, so a command reaches each live worker within one round trip, at no cost when none is sent,
-- without a broadcast channel or a reply key per worker. A worker acts only on entries written after
-- it started (it skips those of its initial load). Returns the id of the entry.
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', tonumber(ARGV[3]), '*', 'c', ARGV[1], 'd', ARGV[2])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4])) end
return id
