-- Renew one instance's lease by its own `ttl_seconds`. Only the lease moves:
-- no event, no revision bump. An instance that is gone (expired or
-- deregistered) gets no lease back: the client must register again.
-- (The pattern cannot match inside metadata: there every `"` is escaped or
-- followed by a string, never by digits.)
--
-- A lease whose deadline has passed is expired even before the reaper has
-- removed it (404: the client registers again), unless its service is
-- protected: held instances renew with a plain heartbeat.
--
-- KEYS[1] reg:svc:{service}   instances hash
-- KEYS[2] reg:leases          lease deadlines
-- KEYS[3] reg:protected       protected services
-- ARGV[1] instance id
-- ARGV[2] lease member `{service}/{id}`
-- ARGV[3] service name
-- Returns {stored JSON, lease deadline ms}, or nil when the instance is gone.
local json = redis.call('HGET', KEYS[1], ARGV[1])
if not json then
  return false
end
local ttl = tonumber(string.match(json, '"ttl_seconds":(%d+)')) or 30
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local current = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[2]))
if current and current < now and redis.call('SISMEMBER', KEYS[3], ARGV[3]) == 0 then
  return false
end
local deadline = now + ttl * 1000
redis.call('ZADD', KEYS[2], deadline, ARGV[2])
return {json, deadline}
