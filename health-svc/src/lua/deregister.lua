-- Remove an instance that has stayed critical past its check's
-- `deregister_critical_after_seconds`, exactly as a DELETE would: the
-- instance, its lease, the service when it was the last one, its check
-- result, and a `deregistered` event, in one atomic step (the events prelude
-- is prepended by events::script).
--
-- KEYS[1] reg:svc:{service}     instances hash
-- KEYS[2] health:svc:{service}  check results hash
-- KEYS[3] reg:leases            lease deadlines ({service}/{id} -> ms)
-- KEYS[4] reg:services          set of service names
-- KEYS[5] reg:revision          the registry's revision counter
-- KEYS[6] reg:events            the registry's event stream
-- ARGV[1] instance id
-- ARGV[2] service name
-- ARGV[3] lease member ({service}/{id})
-- ARGV[4] stream cap (MAXLEN ~)
-- Returns 1 when removed, 0 when it is gone already or no longer critical.
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if not stored or not string.find(stored, '^{"status":"critical",') then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[3])
if redis.call('HLEN', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[4], ARGV[2])
end
redis.call('HDEL', KEYS[2], ARGV[1])
local rev = mcp_next_revision(KEYS[5])
local data = '{"service":' .. cjson.encode(ARGV[2]) .. ',"id":' .. cjson.encode(ARGV[1]) .. '}'
mcp_append(KEYS[6], ARGV[4], rev, 'deregistered', ARGV[2], data)
return 1
