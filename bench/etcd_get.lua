-- etcd JSON gateway: range-read one of 1,000 keys.
dofile(os.getenv("BENCH_DIR") .. "/etcd_put.lua")
local headers = { ["content-type"] = "application/json" }
local keys = {}
for k = 0, 999 do keys[k] = b64_key("/bench/k" .. k) end
local i = -1
request = function()
  i = (i + 1) % 1000
  return wrk.format("POST", "/v3/kv/range", headers, '{"key":"' .. keys[i] .. '"}')
end
