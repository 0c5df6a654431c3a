-- Put one configuration entry in one atomic step: check the precondition and
-- the schema the value was validated against, then write the entry, its
-- history, the namespace's revision and the event together.
--
-- Stored entry JSON always starts with `{"version":V,"revision":R,` followed
-- by ARGV[6], built by Rust with the value as opaque JSON text: the value is
-- never decoded here (cjson would turn [] into {} and round numbers).
--
-- KEYS[1] revision counter        KEYS[2] event stream
-- KEYS[3] cfg:entries:{ns} hash   KEYS[4] cfg:hist:{ns}:{key} list (newest first)
-- KEYS[5] cfg:schema:{ns} hash    KEYS[6] cfg:ns set
-- KEYS[7] cfg:nsrev hash          KEYS[8] cfg:count counter
-- ARGV[1] stream maxlen   ARGV[2] namespace   ARGV[3] key
-- ARGV[4] precondition: '' | 'exists' (If-Match: *) | 'absent' (If-None-Match: *) | '<version>'
-- ARGV[5] schema id the value was validated against (0 = none)
-- ARGV[6] the entry JSON after the version/revision prefix ('"namespace":…}')
-- ARGV[7] history cap     ARGV[8] '1' = dry run (check only, write nothing)
-- Returns {code, a, b, c}:
--   {'ok', version, revision, created}   {'dry', version, 0, created}
--   {'precondition', current version (0 = none), 0, 0}
--   {'schema', current schema id (0 = none), 0, 0}

local function version_of(entry)
  return tonumber(string.match(entry, '^{"version":(%d+),')) or 0
end

local cur = redis.call('HGET', KEYS[3], ARGV[3])
local current = 0
if cur then current = version_of(cur) end

local pre = ARGV[4]
if pre == 'absent' then
  if cur then return {'precondition', current, 0, 0} end
elseif pre == 'exists' then
  if not cur then return {'precondition', 0, 0, 0} end
elseif pre ~= '' then
  if (not cur) or tostring(current) ~= pre then return {'precondition', current, 0, 0} end
end

local schema_id = tonumber(redis.call('HGET', KEYS[5], 'id') or '0')
if schema_id ~= tonumber(ARGV[5]) then return {'schema', schema_id, 0, 0} end

-- Versions continue across a delete: the history's newest entry holds the last one.
local last = current
if not cur then
  local top = redis.call('LINDEX', KEYS[4], 0)
  if top then last = version_of(top) end
end
local version = last + 1
local created = 0
if not cur then created = 1 end
if ARGV[8] == '1' then return {'dry', version, 0, created} end

local rev = mcp_next_revision(KEYS[1])
local entry = '{"version":' .. version .. ',"revision":' .. rev .. ',' .. ARGV[6]
redis.call('HSET', KEYS[3], ARGV[3], entry)
redis.call('LPUSH', KEYS[4], entry)
redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[7]) - 1)
redis.call('SADD', KEYS[6], ARGV[2])
redis.call('HSET', KEYS[7], ARGV[2], rev)
if created == 1 then redis.call('INCR', KEYS[8]) end
mcp_append(KEYS[2], ARGV[1], rev, 'put', ARGV[2], entry)
return {'ok', version, rev, created}
