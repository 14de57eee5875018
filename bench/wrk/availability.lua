-- GET /availability/<sku>?qty=<1..5> for random SKUs SKU_PREFIX000 .. SKU_PREFIX<N-1>:
-- how many, and when N units could come.
--
--   wrk ... -s availability.lua URL -- SKU_PREFIX N

local here = string.match(debug.getinfo(1, "S").source, "^@(.*/)") or "./"
dofile(here .. "lib.lua")

local prefix, nskus

function init(args)
   prefix = args[1]
   nskus = tonumber(args[2])
   math.randomseed(os.time() * 1000 + tid * 7919)
end

function request()
   local path = string.format("/availability/%s%03d?qty=%d",
                              prefix, math.random(0, nskus - 1), math.random(1, 5))
   return wrk.format("GET", path)
end

function response(status, _headers, body)
   count_status(status, body)
end
