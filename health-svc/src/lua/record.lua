-- Store one check result and, when the instance's status changes, rewrite the
-- status in the registry's stored instance JSON and emit a `health` event,
-- all in one atomic step (the events prelude is prepended by events::script).
--
-- The stored JSON starts with {"status":"<status>","revision":<rev>, and is
-- spliced, never decoded and re-encoded (cjson would turn [] into {}).
--
-- KEYS[1] reg:svc:{service}     instances hash (id -> stored instance JSON)
-- KEYS[2] health:svc:{service}  check results hash (id -> HealthRecord JSON)
-- KEYS[3] reg:revision          the registry's revision counter
-- KEYS[4] reg:events            the registry's event stream
-- ARGV[1] instance id
-- ARGV[2] service name
-- ARGV[3] HealthRecord JSON
-- ARGV[4] status to publish ('' = undecided yet, keep the stored one)
-- ARGV[5] stream cap (MAXLEN ~)
-- Returns 0 when the instance is gone (nothing kept), 1 when recorded without
-- a status change, 2 when the status changed (event appended).
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if not stored then
  redis.call('HDEL', KEYS[2], ARGV[1])
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
if ARGV[4] == '' then
  return 1
end
local _, prefix_end, old = string.find(stored, '^{"status":"(%a+)","revision":%d+,')
if not prefix_end then
  return redis.error_reply('stored instance JSON lacks the {"status","revision"} prefix')
end
if old == ARGV[4] then
  return 1
end
local rev = mcp_next_revision(KEYS[3])
local updated = '{"status":"' .. ARGV[4] .. '","revision":' .. rev .. ',' .. string.sub(stored, prefix_end + 1)
redis.call('HSET', KEYS[1], ARGV[1], updated)
local data = '{"service":' .. cjson.encode(ARGV[2]) .. ',"id":' .. cjson.encode(ARGV[1])
  .. ',"instance":' .. updated .. '}'
mcp_append(KEYS[4], ARGV[5], rev, 'health', ARGV[2], data)
return 2
