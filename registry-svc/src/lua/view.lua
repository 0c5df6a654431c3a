-- Read everything registry-svc's in-memory view holds, as one consistent
-- snapshot (read-only): every instance, every lease deadline, every
-- service's lease version, the protected services, and the revision and
-- epoch they are at. The follower loads it, then applies the events after
-- exactly that revision. The instance hashes are only known once the
-- services set is read, so their keys are built here from ARGV[1]; every key
-- of the stack shares the hash slot of `{prefix}`, so this holds in a
-- cluster too.
--
-- KEYS[1] reg:services        service names
-- KEYS[2] reg:revision        revision counter
-- KEYS[3] reg:epoch           the log's epoch
-- KEYS[4] reg:leases          lease deadlines ({service}/{id} -> ms)
-- KEYS[5] reg:lease-versions  service -> its lease version (registry::LeaseVersion)
-- KEYS[6] reg:protected       services whose expiries are held back
-- ARGV[1] key prefix of an instances hash (`{prefix}:reg:svc:`)
-- Returns {revision, epoch ('' when none), {stored instance JSON, …},
-- {member, deadline, …}, {service, lease version, …}, {protected service, …}}.
local instances = {}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  for _, json in ipairs(redis.call('HVALS', ARGV[1] .. name)) do
    instances[#instances + 1] = json
  end
end
return {
  redis.call('GET', KEYS[2]) or '0',
  redis.call('GET', KEYS[3]) or '',
  instances,
  redis.call('ZRANGE', KEYS[4], 0, -1, 'WITHSCORES'),
  redis.call('HGETALL', KEYS[5]),
  redis.call('SMEMBERS', KEYS[6]),
}
