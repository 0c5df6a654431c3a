-- Read one service's instances with their lease deadlines and the revision,
-- as one consistent snapshot (read-only).
--
-- KEYS[1] reg:svc:{service}   instances hash
-- KEYS[2] reg:leases          lease deadlines
-- KEYS[3] reg:revision        revision counter
-- ARGV[1] service name
-- Returns {revision, json 1, deadline 1, json 2, deadline 2, …}; a deadline
-- is '' when the instance has no lease.
local out = {redis.call('GET', KEYS[3]) or '0'}
local all = redis.call('HGETALL', KEYS[1])
-- ZMSCORE in chunks: unpack() is bounded by Lua's C stack.
local chunk = 500
for first = 1, #all, 2 * chunk do
  local last = math.min(first + 2 * chunk - 1, #all)
  local members = {}
  for i = first, last, 2 do
    members[#members + 1] = ARGV[1] .. '/' .. all[i]
  end
  local scores = redis.call('ZMSCORE', KEYS[2], unpack(members))
  for k = 1, #members do
    out[#out + 1] = all[first + 2 * k - 1]
    out[#out + 1] = scores[k] or ''
  end
end
return out
