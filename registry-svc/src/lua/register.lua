-- Register (or replace) one instance: store it with its status and the new
-- revision spliced in front of the caller's JSON tail, (re)start its lease
-- and append `registered` or `updated`, all in one atomic step.
-- Status: `passing` without a check; with one, the status already stored
-- (health-svc's verdict survives a re-registration), else `unknown`.
--
-- KEYS[1] reg:svc:{service}   instances hash
-- KEYS[2] reg:leases          lease deadlines
-- KEYS[3] reg:services        service names
-- KEYS[4] reg:revision        revision counter
-- KEYS[5] reg:events          event stream
-- ARGV[1] stream max length
-- ARGV[2] service name (validated: no quoting needed)
-- ARGV[3] instance id (validated)
-- ARGV[4] lease member `{service}/{id}`
-- ARGV[5] stored JSON tail (registry::stored_tail)
-- ARGV[6] lease length in ms
-- ARGV[7] '1' when the instance has an active check, else '0'
-- Returns {created 1|0, status, revision, lease deadline ms}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local existing = redis.call('HGET', KEYS[1], ARGV[3])
local status = 'passing'
if ARGV[7] == '1' then
  status = 'unknown'
  if existing then
    status = string.match(existing, '^{"status":"(%a+)"') or 'unknown'
  end
end

local rev = mcp_next_revision(KEYS[4])
local json = '{"status":"' .. status .. '","revision":' .. rev .. ',' .. ARGV[5]
local deadline = now + tonumber(ARGV[6])
redis.call('HSET', KEYS[1], ARGV[3], json)
redis.call('ZADD', KEYS[2], deadline, ARGV[4])
redis.call('SADD', KEYS[3], ARGV[2])

local kind, created = 'registered', 1
if existing then kind, created = 'updated', 0 end
mcp_append(KEYS[5], ARGV[1], rev, kind, ARGV[2],
  '{"service":"' .. ARGV[2] .. '","id":"' .. ARGV[3] .. '","instance":' .. json .. '}')
return {created, status, rev, deadline}
