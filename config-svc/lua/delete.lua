-- Delete one configuration entry in one atomic step; its history stays.
--
-- KEYS[1] revision counter   KEYS[2] event stream
-- KEYS[3] cfg:entries:{ns}   KEYS[4] cfg:schema:{ns}   KEYS[5] cfg:ns set
-- KEYS[6] cfg:nsrev hash     KEYS[7] cfg:count counter
-- ARGV[1] stream maxlen   ARGV[2] namespace   ARGV[3] key
-- ARGV[4] precondition: '' | 'exists' | 'absent' | '<version>'
-- ARGV[5] event data tail: ',"namespace":"<ns>","key":"<key>"}'
-- Returns {code, a, b}: {'ok', version, revision}, {'missing', 0, 0},
--   {'precondition', current version, 0}

local cur = redis.call('HGET', KEYS[3], ARGV[3])
if not cur then return {'missing', 0, 0} end
local current = tonumber(string.match(cur, '^{"version":(%d+),')) or 0

local pre = ARGV[4]
if pre == 'absent' then return {'precondition', current, 0} end
if pre ~= '' and pre ~= 'exists' and tostring(current) ~= pre then
  return {'precondition', current, 0}
end

local rev = mcp_next_revision(KEYS[1])
redis.call('HDEL', KEYS[3], ARGV[3])
if redis.call('HLEN', KEYS[3]) == 0 and redis.call('EXISTS', KEYS[4]) == 0 then
  redis.call('SREM', KEYS[5], ARGV[2])
end
redis.call('HSET', KEYS[6], ARGV[2], rev)
-- Never below 0: after a partial data loss the counter may be gone while
-- entries remain.
if tonumber(redis.call('GET', KEYS[7]) or '0') > 0 then
  redis.call('DECR', KEYS[7])
end
local data = '{"version":' .. current .. ',"revision":' .. rev .. ARGV[5]
mcp_append(KEYS[2], ARGV[1], rev, 'delete', ARGV[2], data)
return {'ok', current, rev}
