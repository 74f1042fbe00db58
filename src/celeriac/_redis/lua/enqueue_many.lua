-- enqueue_many: append many ready messages to one queue's stream (bulk send).
--
-- KEYS[1]  celeriac:{queue}:ready  stream of ready messages (field "m" = encoded message)
-- ARGV     the encoded messages, in order
--
-- Why a script: one command carrying N messages costs the client one argument each to pack and one
-- integer to parse, where N pipelined XADDs cost a command and a reply each. The caller sends at
-- most a few thousand per call, so Redis is never blocked for long.
-- Returns the number of messages appended.
for i = 1, #ARGV do
  redis.call('XADD', KEYS[1], '*', 'm', ARGV[i])
end
return #ARGV
