-- GET the healthy instances of one of 100 services (100 instances each).
-- LOOKUP_QUERY replaces the query (default `healthy=true`; the benchmark
-- also runs `healthy=true&stale`).
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
wrk.headers["Authorization"] = os.getenv("MCP_INTERNAL_AUTH")
local query = os.getenv("LOOKUP_QUERY") or "healthy=true"
local i = -1
request = function()
  i = (i + 1) % 100
  return wrk.format("GET", "/v1/services/svc-" .. i .. "/instances?" .. query)
end
