-- Count every service's instances by status, with the revision, as one
-- consistent snapshot (read-only). The instance hashes are only known once
-- the services set is read, so their keys are built here from ARGV[1]: fine
-- on a standalone Redis, which the whole schema assumes (no hash tags).
--
-- KEYS[1] reg:services     service names
-- KEYS[2] reg:protected    services whose expiries are held back
-- KEYS[3] reg:revision     revision counter
-- ARGV[1] key prefix of an instances hash (`{prefix}:reg:svc:`)
-- Returns {revision, then per service: name, total, unknown, passing,
-- warning, critical, protected '1'|'0'}, all as strings.
local out = {redis.call('GET', KEYS[3]) or '0'}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local counts = {unknown = 0, passing = 0, warning = 0, critical = 0}
  local total = 0
  for _, json in ipairs(redis.call('HVALS', ARGV[1] .. name)) do
    total = total + 1
    local status = string.match(json, '^{"status":"(%a+)"')
    if status and counts[status] then
      counts[status] = counts[status] + 1
    end
  end
  local protected = '0'
  if redis.call('SISMEMBER', KEYS[2], name) == 1 then protected = '1' end
  out[#out + 1] = name
  out[#out + 1] = tostring(total)
  out[#out + 1] = tostring(counts.unknown)
  out[#out + 1] = tostring(counts.passing)
  out[#out + 1] = tostring(counts.warning)
  out[#out + 1] = tostring(counts.critical)
  out[#out + 1] = protected
end
return out
