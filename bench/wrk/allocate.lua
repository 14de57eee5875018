-- POST /allocate with a new order line every request.
--
--   wrk ... -s allocate.lua URL -- THREADS ORDER_PREFIX SKU_PREFIX NSKUS COUNT [QTY]
--
-- Order ids are ORDER_PREFIX..k with k = tid, tid + THREADS, tid + 2*THREADS, ...
-- so they never clash between threads (nor with other runs using another prefix).
-- The SKU is SKU_PREFIX followed by a random 3-digit number in [0, NSKUS).
-- COUNT = 0: run for wrk's -d. COUNT > 0: send exactly COUNT allocations in
-- total (this thread's share), then only cheap GET /health fillers until run.py
-- interrupts wrk (see lib.lua).

local here = string.match(debug.getinfo(1, "S").source, "^@(.*/)") or "./"
dofile(here .. "lib.lua")

local headers = { ["Content-Type"] = "application/json" }
local nthreads, order_prefix, sku_prefix, nskus, qty
local quota, issued, answered, finished = 0, 0, 0, false
local verified = false

function init(args)
   nthreads = tonumber(args[1])
   order_prefix = args[2]
   sku_prefix = args[3]
   nskus = tonumber(args[4])
   local count = tonumber(args[5]) or 0
   qty = tonumber(args[6]) or 1
   if count > 0 then
      quota = math.floor(count / nthreads)
      if tid <= count % nthreads then quota = quota + 1 end
   else
      quota = -1
   end
   math.randomseed(os.time() * 1000 + tid * 7919)
end

function request()
   -- wrk calls request() once on the first thread's state to check that the
   -- script makes a valid request, and never sends that one: answer it with a
   -- filler so no order id is lost (were it sent, a filler costs nothing).
   if tid == 1 and not verified then
      verified = true
      return wrk.format("GET", "/health")
   end
   if quota >= 0 and issued >= quota then
      fillers = fillers + 1
      return wrk.format("GET", "/health")
   end
   local k = tid + nthreads * issued
   issued = issued + 1
   local body = string.format('{"orderid":"%s%d","sku":"%s%03d","qty":%d}',
                              order_prefix, k, sku_prefix, math.random(0, nskus - 1), qty)
   return wrk.format("POST", "/allocate", headers, body)
end

function response(status, _headers, body)
   -- /allocate never answers 200; /health (the filler) always does.
   if status ~= 200 then
      count_status(status, body)
      answered = answered + 1
   end
   if quota >= 0 and answered >= quota and not finished then
      finished = true
      lib_finished()
   end
end
