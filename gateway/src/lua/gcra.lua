-- Rate limit one client with GCRA (the generic cell rate algorithm), atomically.
--
-- KEYS[1]  the client's key (holds its theoretical arrival time, µs)
-- ARGV[1]  emission interval: µs between requests at the sustained rate
-- ARGV[2]  burst: requests allowed at once
--
-- Returns {allowed (1|0), remaining, retry_after_us, reset_us}.
-- Time comes from Redis (TIME), so every gateway replica shares one clock.

local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then
  tat = now
end

-- A request may pass when it is no more than (burst - 1) intervals early.
local allow_at = tat - (burst - 1) * interval
if now < allow_at then
  return {0, 0, allow_at - now, tat - now}
end

local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
local remaining = math.floor((now + burst * interval - new_tat) / interval)
if remaining < 0 then
  remaining = 0
end
return {1, remaining, 0, new_tat - now}
