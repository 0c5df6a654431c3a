-- Test-only stand-in for registry-svc's register: writes an instance in the
-- registry's documented schema (see mcp_shared::registry) and appends the
-- `registered`/`updated` event (the events prelude is prepended by events::script).
--
-- KEYS[1] reg:svc:{service}  KEYS[2] reg:services  KEYS[3] reg:leases
-- KEYS[4] reg:revision       KEYS[5] reg:events
-- ARGV[1] id  ARGV[2] service  ARGV[3] stored tail  ARGV[4] lease member
-- ARGV[5] lease deadline ms  ARGV[6] stream cap
local kind = 'registered'
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then kind = 'updated' end
local rev = mcp_next_revision(KEYS[4])
local stored = '{"status":"unknown","revision":' .. rev .. ',' .. ARGV[3]
redis.call('HSET', KEYS[1], ARGV[1], stored)
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
mcp_append(KEYS[5], ARGV[6], rev, kind, ARGV[2],
  '{"service":"' .. ARGV[2] .. '","id":"' .. ARGV[1] .. '","instance":' .. stored .. '}')
return rev
