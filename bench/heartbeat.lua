-- PUT a heartbeat; ids cycle through INSTANCES. PACE_MS paces each connection
-- (for a steady background load: 10 connections x 10 ms = ~1000/s).
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
wrk.headers["Authorization"] = os.getenv("MCP_INTERNAL_AUTH")
local n = tonumber(os.getenv("INSTANCES") or "10000")
local pace = tonumber(os.getenv("PACE_MS") or "0")
local i = -1
request = function()
  i = (i + 1) % n
  return wrk.format("PUT", "/v1/services/svc-" .. (i % 100) .. "/instances/i-" .. i .. "/heartbeat")
end
if pace > 0 then delay = function() return pace end end
