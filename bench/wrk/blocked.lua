-- wrk script for the 429 fast path of nidan's POST /api/v1/verify: users that are in a long second-factor block
-- (bench/seeding.py puts them there in storage), hammered with codes. Every answer must be 429 with a Retry-After
-- header of a positive number of seconds; anything else is an error.
--
-- Environment (read in every thread):
--   BENCH_BODIES    "username code" per line (bench/loadgen.py write_wrong_codes writes it)
--   BENCH_API_KEY   the application's API key (Bearer)
--   BENCH_THREADS   wrk's -t: thread i (0-based) takes the users on lines i, i+T, i+2T, ... (round robin, forever)

local thread_counter = 0
local threads = {}

function setup(thread)
  thread:set("id", thread_counter)
  thread_counter = thread_counter + 1
  table.insert(threads, thread)
end

local headers
local bodies = {}
local count = 0
local cursor = 0

-- Counters read by done() through thread:get.
throttled, errors = 0, 0
samples = ""
local sample_count = 0

function init(args)
  local nthreads = tonumber(os.getenv("BENCH_THREADS"))
  headers = {
    ["Authorization"] = "Bearer " .. os.getenv("BENCH_API_KEY"),
    ["Content-Type"] = "application/json",
  }
  local all = {}
  local file = assert(io.open(os.getenv("BENCH_BODIES"), "r"))
  for line in file:lines() do
    local username, code = string.match(line, "^(%S+) (%S+)$")
    if username then
      all[#all + 1] = '{"username":"' .. username .. '","code":"' .. code .. '"}'
    end
  end
  file:close()
  for index, body in ipairs(all) do
    -- Fewer users than threads: a thread shares a user with another rather than sending nothing.
    if (index - 1) % nthreads == id or (#all < nthreads and index == id % #all + 1) then
      count = count + 1
      bodies[count] = body
    end
  end
  assert(count > 0, "blocked.lua: no users for thread " .. id)
end

function request()
  cursor = cursor % count + 1
  return wrk.format("POST", "/api/v1/verify", headers, bodies[cursor])
end

local function retry_after(headers)
  for name, value in pairs(headers) do
    if string.lower(name) == "retry-after" then
      return tonumber(value)
    end
  end
  return nil
end

function response(status, headers, body)
  local seconds = retry_after(headers)
  if status == 429 and seconds ~= nil and seconds > 0 then
    throttled = throttled + 1
  else
    errors = errors + 1
    if sample_count < 5 then
      sample_count = sample_count + 1
      samples = samples .. "BENCH_SAMPLE " .. status .. " retry-after=" .. tostring(seconds) .. " "
        .. string.gsub(body or "", "[\r\n]", " ") .. "\n"
    end
  end
end

local report = dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

function done(summary, latency, requests)
  report.done(threads, { throttled = "throttled", errors = "errors" }, summary, latency)
end
