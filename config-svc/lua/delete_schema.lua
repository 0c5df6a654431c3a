-- Remove a namespace's schema; forget the namespace when it holds no entry either.
--
-- KEYS[1] cfg:schema:{ns} hash   KEYS[2] cfg:entries:{ns} hash   KEYS[3] cfg:ns set
-- ARGV[1] namespace
-- Returns 1 when a schema was removed, 0 when there was none.

local removed = redis.call('DEL', KEYS[1])
if removed == 1 and redis.call('HLEN', KEYS[2]) == 0 then
  redis.call('SREM', KEYS[3], ARGV[1])
end
return removed
