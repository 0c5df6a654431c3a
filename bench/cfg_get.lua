-- config-svc: GET one of 1,000 keys.
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
wrk.headers["Authorization"] = os.getenv("MCP_INTERNAL_AUTH")
local i = -1
request = function()
  i = (i + 1) % 1000
  return wrk.format("GET", "/v1/namespaces/bench/keys/k" .. i)
end
