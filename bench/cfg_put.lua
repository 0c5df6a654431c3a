-- config-svc: PUT a 1 KiB value to one of 1,000 keys.
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
local body = '{"value":"' .. string.rep("v", 1012) .. '"}'
local headers = { ["content-type"] = "application/json", ["Authorization"] = os.getenv("MCP_INTERNAL_AUTH") }
local i = -1
request = function()
  i = (i + 1) % 1000
  return wrk.format("PUT", "/v1/namespaces/bench/keys/k" .. i, headers, body)
end
