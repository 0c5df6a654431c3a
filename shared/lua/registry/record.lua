-- Store one check result and, when the instance's status changes, rewrite the
-- status in the registry's stored instance JSON and emit a `health` event,
-- all in one atomic step.
--
-- The stored JSON starts with {"status":"<status>","revision":<rev>, and is
-- spliced, never decoded and re-encoded (cjson would turn [] into {}).
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
-- ARGV[4] HealthRecord JSON
-- ARGV[5] status to publish ('' = undecided yet, keep the stored one)
-- Returns 0 when the instance is gone (nothing kept), 1 when recorded without
-- a status change, 2 when the status changed (event appended).
local stored = redis.call('HGET', KEYS[1], ARGV[3])
if not stored then
  redis.call('HDEL', KEYS[2], ARGV[3])
  return 0
end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
if ARGV[5] == '' then
  return 1
end
local _, prefix_end, old = string.find(stored, '^{"status":"(%a+)","revision":%d+,')
if not prefix_end then
  return redis.error_reply('stored instance JSON lacks the {"status","revision"} prefix')
end
if old == ARGV[5] then
  return 1
end
local rev = mcp_next_revision(KEYS[5])
local updated = '{"status":"' .. ARGV[5] .. '","revision":' .. rev .. ',' .. string.sub(stored, prefix_end + 1)
redis.call('HSET', KEYS[1], ARGV[3], updated)
local data = '{"service":"' .. ARGV[2] .. '","id":"' .. ARGV[3] .. '","instance":' .. updated .. '}'
mcp_append(KEYS[6], ARGV[1], rev, 'health', ARGV[2], data)
return 2
