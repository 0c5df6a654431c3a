-- Remove one instance on request (always honoured, protection or not): its
-- entry, its lease and its health record, and the service name once it has
-- no instance left; append `deregistered`.
--
-- KEYS[1] reg:svc:{service}     instances hash
-- KEYS[2] reg:leases            lease deadlines
-- KEYS[3] reg:services          service names
-- KEYS[4] health:svc:{service}  health-svc's check results
-- KEYS[5] reg:revision          revision counter
-- KEYS[6] reg:events            event stream
-- ARGV[1] stream max length
-- ARGV[2] service name
-- ARGV[3] instance id
-- ARGV[4] lease member `{service}/{id}`
-- Returns the new revision, or nil when there was no such instance.
if redis.call('HDEL', KEYS[1], ARGV[3]) == 0 then
  return false
end
redis.call('ZREM', KEYS[2], ARGV[4])
redis.call('HDEL', KEYS[4], ARGV[3])
if redis.call('HLEN', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[3], ARGV[2])
end
local rev = mcp_next_revision(KEYS[5])
mcp_append(KEYS[6], ARGV[1], rev, 'deregistered', ARGV[2],
  '{"service":"' .. ARGV[2] .. '","id":"' .. ARGV[3] .. '"}')
return rev
