-- Store a namespace's JSON Schema, unless the namespace's entries changed
-- since the caller validated them (then the caller re-reads and retries).
-- A fresh schema id (never reused) lets every replica detect a stale cache.
--
-- KEYS[1] cfg:schema:{ns} hash   KEYS[2] cfg:schemaseq counter
-- KEYS[3] cfg:nsrev hash         KEYS[4] cfg:ns set
-- ARGV[1] namespace   ARGV[2] namespace revision the entries were read at ('0' = none)
-- ARGV[3] schema JSON text       ARGV[4] updated_at (RFC 3339)
-- Returns {'ok', schema id, created} or {'changed', 0, 0}.

local seen = redis.call('HGET', KEYS[3], ARGV[1]) or '0'
if seen ~= ARGV[2] then return {'changed', 0, 0} end
local created = 1 - redis.call('EXISTS', KEYS[1])
local id = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'id', id, 'schema', ARGV[3], 'updated_at', ARGV[4])
redis.call('SADD', KEYS[4], ARGV[1])
return {'ok', id, created}
