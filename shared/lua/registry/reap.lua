-- Expire one service's lapsed instances, or hold them back (protection).
--
-- Atomic per service, on Redis's clock: each due instance is expired at most
-- once however many replicas run this concurrently (the second finds it
-- gone), and every replica takes the same protection decision.
--
-- An instance is *lapsed* when its deadline has passed and *due* when it
-- passed at least `settle` ms ago (so instances that stop together are
-- judged together, not one per tick). The service is *at risk* by its lapsed
-- instances plus those expired within the last `window` ms (kept in
-- reg:expired:{service}), out of its instances plus those. When at least
-- `min` are at risk and they are more than `threshold` of it, nothing
-- expires and the service is marked protected; otherwise every due instance
-- expires (entry, lease, health record; event `expired`). When protection
-- lifts (heartbeats came back), the instances still held get one more
-- `window` to heartbeat instead of expiring at once: after a partition heals
-- the instances renew one by one, and the late ones are alive too.
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
-- ARGV[3] settle ms
-- ARGV[4] window ms
-- ARGV[5] threshold (share, 0..1)
-- ARGV[6] min instances at risk
-- Returns {expired, protected 1|0, lapsed}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local service = ARGV[2]
local settle = tonumber(ARGV[3])
local window = tonumber(ARGV[4])

local ids = redis.call('HKEYS', KEYS[1])
local lapsed, due = {}, {}
local chunk = 500
for first = 1, #ids, chunk do
  local last = math.min(first + chunk - 1, #ids)
  local members = {}
  for i = first, last do
    members[#members + 1] = service .. '/' .. ids[i]
  end
  local scores = redis.call('ZMSCORE', KEYS[3], unpack(members))
  for k = 1, #members do
    -- No lease at all counts as long gone.
    local deadline = tonumber(scores[k] or 0)
    if deadline <= now then
      lapsed[#lapsed + 1] = members[k]
      if deadline <= now - settle then
        due[#due + 1] = ids[first + k - 1]
      end
    end
  end
end

if #due == 0 then
  if #lapsed == 0 then
    redis.call('SREM', KEYS[7], service)
  end
  return {0, redis.call('SISMEMBER', KEYS[7], service), #lapsed}
end

redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', now - window)
local recent = redis.call('ZCARD', KEYS[8])
local at_risk = #lapsed + recent
local total = #ids + recent
if at_risk >= tonumber(ARGV[6]) and at_risk > tonumber(ARGV[5]) * total then
  redis.call('SADD', KEYS[7], service)
  return {0, 1, #lapsed}
end

if redis.call('SREM', KEYS[7], service) == 1 then
  -- Lifting protection: a last window for the held instances to heartbeat.
  for _, member in ipairs(lapsed) do
    redis.call('ZADD', KEYS[3], now + window, member)
  end
  -- Leases moved without an event: say so (see heartbeat.lua); several at
  -- once, so the version names no renewal and a view reads them all.
  local version = (tonumber(string.match(redis.call('HGET', KEYS[9], service) or '', '^%d+')) or 0) + 1
  redis.call('HSET', KEYS[9], service, string.format('%d', version))
  return {0, 0, #lapsed}
end
for _, id in ipairs(due) do
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[3], service .. '/' .. id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('ZADD', KEYS[8], now, id)
  local rev = mcp_next_revision(KEYS[5])
  mcp_append(KEYS[6], ARGV[1], rev, 'expired', service,
    '{"service":"' .. service .. '","id":"' .. id .. '"}')
end
redis.call('PEXPIRE', KEYS[8], window)
if redis.call('HLEN', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[4], service)
  redis.call('HDEL', KEYS[9], service)
end
return {#due, 0, #lapsed}
