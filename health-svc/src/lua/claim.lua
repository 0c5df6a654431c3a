-- Claim one check slot of one instance, so that a slot is checked exactly once
-- across every replica, and hand back the instance's health record.
--
-- The claim key holds the highest slot number claimed so far; a claim for a
-- slot at or below it loses. It expires after a few intervals, so instances
-- that are gone leave no claim behind. An instance whose entry is gone
-- (deregistered, expired, or Redis lost its data) gets no claim at all:
-- nothing is written for it, and the catalog drops it on its next event.
--
-- KEYS[1] health:claim:{service}/{id}   the claim
-- KEYS[2] health:svc:{service}          check results hash
-- KEYS[3] reg:svc:{service}             instances hash
-- ARGV[1] slot number (integer)
-- ARGV[2] claim expiry in ms
-- ARGV[3] instance id
-- Returns nil when another replica has this slot or the instance is gone,
-- else the record JSON or ''.
if redis.call('HEXISTS', KEYS[3], ARGV[3]) == 0 then
  return false
end
local current = tonumber(redis.call('GET', KEYS[1]))
local slot = tonumber(ARGV[1])
if current and current >= slot then
  return false
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local record = redis.call('HGET', KEYS[2], ARGV[3])
return record or ''
