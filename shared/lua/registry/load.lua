-- Read every registered instance with the revision, as one consistent
-- snapshot (read-only): a follower (the gateway's routing table,
-- health-svc's catalog) loads it, then applies the events after exactly
-- that revision. The instance hashes are only known once the services set
-- is read, so their keys are built here from ARGV[1]; every key of the
-- stack shares the hash slot of `{prefix}`, so this holds in a cluster too.
--
-- KEYS[1] reg:services     service names
-- KEYS[2] reg:revision     revision counter
-- ARGV[1] key prefix of an instances hash (`{prefix}:reg:svc:`)
-- Returns {revision, stored instance JSON 1, JSON 2, …}, all as strings.
local out = {redis.call('GET', KEYS[2]) or '0'}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  for _, json in ipairs(redis.call('HVALS', ARGV[1] .. name)) do
    out[#out + 1] = json
  end
end
return out
