-- Renew one instance's lease by its own `ttl_seconds`. Only the lease moves:
-- no event, no revision bump; the service's lease version goes up instead
-- (with this renewal in it), so a replica's in-memory copy learns that its
-- deadlines are old. An instance that is gone (expired or
-- deregistered) gets no lease back: the client must register again.
-- (The pattern cannot match inside metadata: there every `"` is escaped or
-- followed by a string, never by digits.)
--
-- A lease whose deadline has passed is expired even before the reaper has
-- removed it (404: the client registers again), unless its service is
-- protected: held instances renew with a plain heartbeat.
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
-- Returns {stored JSON, lease deadline ms}, or nil when the instance is gone.
local member = ARGV[2] .. '/' .. ARGV[3]
local json = redis.call('HGET', KEYS[1], ARGV[3])
if not json then
  return false
end
local ttl = tonumber(string.match(json, '"ttl_seconds":(%d+)')) or 30
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local current = tonumber(redis.call('ZSCORE', KEYS[3], member))
if current and current < now and redis.call('SISMEMBER', KEYS[7], ARGV[2]) == 0 then
  return false
end
local deadline = now + ttl * 1000
redis.call('ZADD', KEYS[3], deadline, member)
-- The lease version moves and names this renewal, so a view one version
-- behind applies it without reading every lease (registry::LeaseVersion).
local version = (tonumber(string.match(redis.call('HGET', KEYS[9], ARGV[2]) or '', '^%d+')) or 0) + 1
redis.call('HSET', KEYS[9], ARGV[2], string.format('%d %s %d', version, ARGV[3], deadline))
return {json, deadline}
