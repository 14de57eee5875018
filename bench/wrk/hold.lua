-- A checkout: POST /holds for a new hold, then, once it is held, POST
-- /holds/<holdid>/confirm for an order of its own. A confirm goes out only after
-- its hold's 201 came back (on whichever connection is free next), so every pair
-- is place-then-confirm of one hold, as a shop would do it.
--
--   wrk ... -s hold.lua URL -- THREADS HOLD_PREFIX SKU_PREFIX NSKUS
--
-- Hold ids are HOLD_PREFIX..k with k = tid, tid + THREADS, ... (never clashing
-- between threads); the SKU is SKU_PREFIX with a random 3-digit number in [0, NSKUS).

local here = string.match(debug.getinfo(1, "S").source, "^@(.*/)") or "./"
dofile(here .. "lib.lua")

local headers = { ["Content-Type"] = "application/json" }
local nthreads, hold_prefix, sku_prefix, nskus
local placed = 0
local held = {}      -- hold ids whose 201 came back, waiting for their confirm
local verified = false

function init(args)
   nthreads = tonumber(args[1])
   hold_prefix = args[2]
   sku_prefix = args[3]
   nskus = tonumber(args[4])
   math.randomseed(os.time() * 1000 + tid * 7919)
end

function request()
   -- wrk checks the script with one request it never sends: a filler, so no id is lost.
   if tid == 1 and not verified then
      verified = true
      return wrk.format("GET", "/health")
   end
   local holdid = table.remove(held)
   if holdid then
      local body = string.format('{"orderid":"%s-order"}', holdid)
      return wrk.format("POST", "/holds/" .. holdid .. "/confirm", headers, body)
   end
   local k = tid + nthreads * placed
   placed = placed + 1
   local body = string.format('{"holdid":"%s%d","sku":"%s%03d","qty":1,"ttl_seconds":900}',
                              hold_prefix, k, sku_prefix, math.random(0, nskus - 1))
   return wrk.format("POST", "/holds", headers, body)
end

function response(status, _headers, body)
   if status == 200 then return end  -- the filler
   count_status(status, body)
   if status == 201 then
      table.insert(held, string.match(body, '"holdid":"(.-)"'))
   end
end
