-- GET /allocations/<orderid> for random orders ORDER_PREFIX1 .. ORDER_PREFIX<N>.
--
--   wrk ... -s read.lua URL -- ORDER_PREFIX N

local here = string.match(debug.getinfo(1, "S").source, "^@(.*/)") or "./"
dofile(here .. "lib.lua")

local prefix, norders

function init(args)
   prefix = args[1]
   norders = tonumber(args[2])
   math.randomseed(os.time() * 1000 + tid * 7919)
end

function request()
   return wrk.format("GET", "/allocations/" .. prefix .. math.random(1, norders))
end

function response(status, _headers, body)
   count_status(status, body)
end
