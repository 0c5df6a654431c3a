-- GET the healthy instances of one of 100 services (100 instances each).
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
wrk.headers["Authorization"] = os.getenv("MCP_INTERNAL_AUTH")
local i = -1
request = function()
  i = (i + 1) % 100
  return wrk.format("GET", "/v1/services/svc-" .. i .. "/instances?healthy=true")
end
