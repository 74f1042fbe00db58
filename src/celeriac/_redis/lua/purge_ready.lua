-- purge_ready: delete up to ARGV[2] messages of a queue's stream that no worker has taken yet.
--
-- KEYS[1]  celeriac:{queue}:ready  stream of ready messages; consumer group ARGV[1]
-- ARGV[1]  consumer group
-- ARGV[2]  at most this many entries per call (the caller loops; a bounded call keeps Redis responsive)
--
-- Entries after the group's last-delivered id were never handed out; entries up to it are either
-- acked (deleted, or trimmed by settle.lua: at most a stream node of them is left) or running (in
-- the pending list), which a purge leaves alone.
-- Returns the number of entries deleted.
local start = '-'
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
for _, g in ipairs(groups) do
  local name, last = nil, nil
  for j = 1, #g, 2 do
    if g[j] == 'name' then name = g[j + 1] end
    if g[j] == 'last-delivered-id' then last = g[j + 1] end
  end
  if name == ARGV[1] and last ~= nil then start = '(' .. last end
end
local entries = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', tonumber(ARGV[2]))
-- XDEL in chunks: Lua's unpack() refuses more than about 8,000 values (LUAI_MAXCSTACK)
for first = 1, #entries, 1000 do
  local ids = {}
  for i = first, math.min(first + 999, #entries) do ids[#ids + 1] = entries[i][1] end
  redis.call('XDEL', KEYS[1], unpack(ids))
end
return #entries
