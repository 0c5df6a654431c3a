-- etcd JSON gateway: put a 1 KiB value to one of 1,000 keys (keys and values base64).
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
local value = string.rep("dnZ2", 342)   -- 1,026 bytes once decoded
local headers = { ["content-type"] = "application/json" }
local keys = {}
local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64(s)
  return ((s:gsub('.', function(x)
    local r, b = '', x:byte()
    for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and '1' or '0') end
    return r
  end) .. '0000'):gsub('%d%d%d?%d?%d?%d?', function(x)
    if #x < 6 then return '' end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == '1' and 2 ^ (6 - i) or 0) end
    return alphabet:sub(c + 1, c + 1)
  end) .. ({ '', '==', '=' })[#s % 3 + 1])
end
for i = 0, 999 do keys[i] = b64("/bench/k" .. i) end
local i = -1
request = function()
  i = (i + 1) % 1000
  return wrk.format("POST", "/v3/kv/put", headers, '{"key":"' .. keys[i] .. '","value":"' .. value .. '"}')
end
b64_key = b64
