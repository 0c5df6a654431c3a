-- PUT an instance; ids cycle through INSTANCES ids spread over 100 services.
-- CHECK=http adds an HTTP check on the instance (for bench/health).
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
local n = tonumber(os.getenv("INSTANCES") or "10000")
local port = os.getenv("UPSTREAM_PORT") or "9"
local check = ""
if os.getenv("CHECK") == "http" then
  check = ',"check":{"type":"http","path":"/","interval_seconds":' .. (os.getenv("INTERVAL") or "10") .. ',"timeout_ms":500}'
end
local body = '{"host":"127.0.0.1","port":' .. port .. ',"ttl_seconds":3600,"tags":["v1"],"metadata":{"zone":"a"}' .. check .. '}'
local headers = { ["content-type"] = "application/json", ["Authorization"] = os.getenv("MCP_INTERNAL_AUTH") }
local i = -1
request = function()
  i = (i + 1) % n
  return wrk.format("PUT", "/v1/services/svc-" .. (i % 100) .. "/instances/i-" .. i, headers, body)
end
