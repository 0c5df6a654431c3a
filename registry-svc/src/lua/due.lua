-- Which services the reaper must look at now: those with a lease that ran
-- out at least `settle` ms ago, plus every protected service (to release it
-- once its instances heartbeat again or are deregistered). Read-only; the
-- decision itself is reap.lua's, per service. Uses Redis's clock, so every
-- replica judges deadlines by the same time.
--
-- KEYS[1] reg:leases       lease deadlines
-- KEYS[2] reg:protected    services whose expiries are held back
-- ARGV[1] settle ms
-- ARGV[2] most lease members to scan in one call
-- Returns the distinct service names.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGE', KEYS[1], '-inf', now - tonumber(ARGV[1]),
  'BYSCORE', 'LIMIT', 0, tonumber(ARGV[2]))
local seen, out = {}, {}
for _, member in ipairs(due) do
  local service = string.match(member, '^([^/]+)/')
  if service and not seen[service] then
    seen[service] = true
    out[#out + 1] = service
  end
end
for _, service in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if not seen[service] then
    seen[service] = true
    out[#out + 1] = service
  end
end
return out
