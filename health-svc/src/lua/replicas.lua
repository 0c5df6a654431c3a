-- Heartbeat of one health-svc replica and the list of live replicas, timed
-- by Redis's clock so replicas with skewed clocks still agree.
--
-- KEYS[1] health:replicas   sorted set: replica id -> last seen (ms, Redis time)
-- ARGV[1] this replica's id
-- ARGV[2] live window in ms (seen within it = live)
-- ARGV[3] forget replicas not seen for this many ms
-- Returns the ids of live replicas (this one included).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
return redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[2]), '+inf')
