-- Register (or replace) one instance: store it with its status and the new
-- revision spliced in front of the caller's JSON tail, (re)start its lease
-- and append `registered` or `updated`, all in one atomic step.
-- Status: `passing` without a check; with one, the status already stored
-- (health-svc's verdict survives a re-registration), else `unknown`.
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
-- ARGV[3] instance id (validated)
-- ARGV[4] stored JSON tail (registry::stored_tail)
-- ARGV[5] lease length in ms
-- ARGV[6] '1' when the instance has an active check, else '0'
-- Returns {created 1|0, status, revision, lease deadline ms}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local member = ARGV[2] .. '/' .. ARGV[3]

local existing = redis.call('HGET', KEYS[1], ARGV[3])
local status = 'passing'
if ARGV[6] == '1' then
  status = 'unknown'
  if existing then
    status = string.match(existing, '^{"status":"(%a+)"') or 'unknown'
  end
end

local rev = mcp_next_revision(KEYS[5])
local json = '{"status":"' .. status .. '","revision":' .. rev .. ',' .. ARGV[4]
local deadline = now + tonumber(ARGV[5])
redis.call('HSET', KEYS[1], ARGV[3], json)
redis.call('ZADD', KEYS[3], deadline, member)
redis.call('SADD', KEYS[4], ARGV[2])

local kind, created = 'registered', 1
if existing then kind, created = 'updated', 0 end
mcp_append(KEYS[6], ARGV[1], rev, kind, ARGV[2],
  '{"service":"' .. ARGV[2] .. '","id":"' .. ARGV[3] .. '","instance":' .. json .. '}')
return {created, status, rev, deadline}
