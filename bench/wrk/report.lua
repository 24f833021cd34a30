-- The BENCH_JSON line every script ends with (parsed by loadgen.parse): wrk's summary and latency, and the counts
-- the script kept per thread. Loaded by verify.lua, signin.lua and blocked.lua from BENCH_LUA_DIR.
local report = {}

local COUNTS = { "ok", "signins", "logins", "rejected", "throttled", "errors", "exhausted" }

-- `variables` maps a count of the line to the thread variable that holds it (counts left out are 0); each
-- thread's "samples" (answers kept for the log) are written first.
function report.done(threads, variables, summary, latency)
  local totals = {}
  for _, count in ipairs(COUNTS) do
    totals[count] = 0
  end
  for _, thread in ipairs(threads) do
    for count, variable in pairs(variables) do
      totals[count] = totals[count] + thread:get(variable)
    end
    io.write(thread:get("samples"))
  end
  local e = summary.errors
  io.write(string.format(
    '\nBENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},"non_2xx":%d,'
      .. '"ok":%d,"signins":%d,"logins":%d,"rejected":%d,"throttled":%d,"errors":%d,"exhausted":%d,'
      .. '"latency_us":{"min":%d,"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p99_9":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.timeout, e.status,
    totals.ok, totals.signins, totals.logins, totals.rejected, totals.throttled, totals.errors, totals.exhausted,
    latency.min, latency.mean, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)
  ))
end

return report
