-- Remove one instance: its entry, its lease and its check result, and the
-- service name once it has no instance left; append `deregistered`, all in
-- one atomic step. Two callers: a DELETE (registry-svc; always honoured,
-- protection or not) and health-svc removing an instance that has stayed
-- critical past its check's `deregister_critical_after_seconds`, which asks
-- for the removal only if the instance is still critical.
--
-- KEYS (every registry write gets the same nine, in this order; see
-- shared/src/registry/writes.rs):
-- KEYS[1] reg:svc:{service}      instances hash (id -> stored instance JSON)
-- KEYS[2] health:svc:{service}   check results hash (id -> HealthRecord JSON)
-- KEYS[3] reg:leases             lease deadlines ({service}/{id} -> ms)
-- KEYS[4] reg:services           service names
-- KEYS[5] reg:revision           revision counter
-- KEYS[6] reg:events             event stream
-- KEYS[7] reg:protected          services under mass-expiry protection
-- KEYS[8] reg:expired:{service}  recent expiries (id -> ms)
-- KEYS[9] reg:lease-versions     service -> version of its leases
-- ARGV[1] stream max length
-- ARGV[2] service name (validated: no quoting needed)
-- ARGV[3] instance id
-- ARGV[4] '' to remove whatever its status, or the status it must still have
-- Returns the new revision, or nil when there was no such instance (or it
-- no longer has the required status).
local stored = redis.call('HGET', KEYS[1], ARGV[3])
if not stored then
  return false
end
if ARGV[4] ~= '' and not string.find(stored, '^{"status":"' .. ARGV[4] .. '",') then
  return false
end
redis.call('HDEL', KEYS[1], ARGV[3])
redis.call('ZREM', KEYS[3], ARGV[2] .. '/' .. ARGV[3])
redis.call('HDEL', KEYS[2], ARGV[3])
if redis.call('HLEN', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[4], ARGV[2])
  redis.call('HDEL', KEYS[9], ARGV[2])
end
local rev = mcp_next_revision(KEYS[5])
mcp_append(KEYS[6], ARGV[1], rev, 'deregistered', ARGV[2],
  '{"service":"' .. ARGV[2] .. '","id":"' .. ARGV[3] .. '"}')
return rev
