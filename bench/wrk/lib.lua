-- Shared by the scenario scripts (loaded with dofile from each of them).
--
-- wrk runs one Lua state per thread plus one for setup() and done().
-- setup() numbers the threads (global `tid` in each thread state, 1-based);
-- response() counts statuses per thread; done() gathers those counts from
-- every thread and prints one line "WRK_RESULT {json}" that the harness parses
-- (bench/harness/loadgen.py).
--
-- Fixed-count mode: a scenario that sets `quota` (this thread's share of the
-- requests) calls lib_finished() once its last real response arrived; that
-- prints "WRK_THREAD_DONE <tid>" and stops the thread. wrk itself only ends
-- at -d or on SIGINT, which the harness sends once every thread reported done.

local threads = {}

-- Per-thread state (each thread state loads this file, so each has its own).
tid = 0              -- set by setup() through thread:set before init() runs
statuses = {}        -- status code -> count, real requests only
out_of_stock = 0     -- 409 answers whose message says "Out of stock"
fillers = 0          -- GET /health sent after a fixed-count quota was used up
messages = {}        -- "<status> <message, digits as #>" -> count, non-2xx only

function setup(thread)
   table.insert(threads, thread)
   thread:set("tid", #threads)
end

function count_status(status, body)
   statuses[status] = (statuses[status] or 0) + 1
   if status == 409 and body and string.find(body, "Out of stock", 1, true) then
      out_of_stock = out_of_stock + 1
   end
   if status < 200 or status > 299 then
      local message = body and string.match(body, '"message"%s*:%s*"(.-)"') or ""
      message = string.sub(string.gsub(message, "%d+", "#"), 1, 80)
      local key = status .. " " .. message
      messages[key] = (messages[key] or 0) + 1
   end
end

function lib_finished()
   io.stdout:write(string.format("WRK_THREAD_DONE %d\n", tid))
   io.stdout:flush()
   wrk.thread:stop()
end

local function json_number(value)
   if value ~= value or value == math.huge or value == -math.huge then
      return "null"
   end
   return string.format("%.17g", value)
end

function done(summary, latency, requests)
   local total_statuses, total_messages, total_oos, total_fillers = {}, {}, 0, 0
   for _, thread in ipairs(threads) do
      local counts = thread:get("statuses") or {}
      for status, n in pairs(counts) do
         total_statuses[status] = (total_statuses[status] or 0) + n
      end
      for key, n in pairs(thread:get("messages") or {}) do
         total_messages[key] = (total_messages[key] or 0) + n
      end
      total_oos = total_oos + (thread:get("out_of_stock") or 0)
      total_fillers = total_fillers + (thread:get("fillers") or 0)
   end

   local parts = {}
   for status, n in pairs(total_statuses) do
      table.insert(parts, string.format('"%d":%d', status, n))
   end

   local kinds = {}
   for key, n in pairs(total_messages) do
      local escaped = string.gsub(key, '[%c"\\]', "?")
      table.insert(kinds, string.format('"%s":%d', escaped, n))
   end

   local pct = {}
   for _, p in ipairs({50, 75, 90, 99, 99.9}) do
      table.insert(pct, string.format('"%s":%s', tostring(p), json_number(latency:percentile(p))))
   end

   local e = summary.errors
   io.stdout:write(string.format(
      'WRK_RESULT {"duration_us":%d,"requests":%d,"bytes":%d,'
         .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
         .. '"latency_us":{"min":%s,"max":%s,"mean":%s,"stdev":%s,"percentiles":{%s}},'
         .. '"statuses":{%s},"messages":{%s},"out_of_stock":%d,"fillers":%d,"threads":%d}\n',
      summary.duration, summary.requests, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      json_number(latency.min), json_number(latency.max),
      json_number(latency.mean), json_number(latency.stdev),
      table.concat(pct, ","), table.concat(parts, ","), table.concat(kinds, ","), total_oos, total_fillers, #threads))
   io.stdout:flush()
end
