-- wrk script for a verify call: nidan's POST /api/v1/verify, or privacyIDEA's POST /validate/check as the peer
-- (bench/nidan_bench.py and bench/privacyidea.py write its input and read its output). One script for both, so the
-- code picking, the round robin and the counting are the same for every system measured; only the request and the
-- reading of the answer differ (the `targets` table below).
--
-- Environment (read in every thread: wrk gives each thread its own Lua state, so nothing is shared but these):
--   BENCH_TARGET    "nidan" (default) or "privacyidea"
--   BENCH_MODE      "valid" (first-use codes, each must be accepted) or "wrong" (wrong codes, each must be refused)
--   BENCH_BODIES    the input file (below)
--   BENCH_API_KEY   nidan: the application's API key (Bearer); privacyidea: unused (/validate/check is anonymous)
--   BENCH_THREADS   wrk's -t: thread i (0-based) takes the users on data lines i, i+T, i+2T, ...
--   BENCH_MAX_WRONG wrong mode: wrong codes per user at most (default 2: one tolerated, one that starts a 1 s block)
--
-- The input file and how a valid code is picked: see codes.lua (shared with signin.lua).
--
-- When no user has a usable code left (too few users for the throughput), request() counts it in `exhausted`
-- and sends the target's health check instead; the Python side fails the run when exhausted > 0.
--
-- Answers: nidan, valid mode wants 200 {"ok":true,...}, wrong mode 200 {"ok":false,...} (429 counted apart as
-- throttled); privacyIDEA, valid mode wants 200 with "result": {"status": true, "value": true, ...}, wrong mode
-- "status": true, "value": false (it has no 429). Anything else is an error.

local thread_counter = 0
local threads = {}

function setup(thread)
  thread:set("id", thread_counter)
  thread_counter = thread_counter + 1
  table.insert(threads, thread)
end

-- What differs between the systems measured: the request and the reading of the answer.
local targets = {
  nidan = {
    path = "/api/v1/verify",
    fallback = "/healthz",
    headers = function()
      return {
        ["Authorization"] = "Bearer " .. os.getenv("BENCH_API_KEY"),
        ["Content-Type"] = "application/json",
      }
    end,
    body = function(username, code)
      return '{"username":"' .. username .. '","code":"' .. code .. '"}'
    end,
    accepted = function(status, body)
      return status == 200 and string.find(body, '"ok":true', 1, true) ~= nil
    end,
    refused = function(status, body)
      return status == 200 and string.find(body, '"ok":false', 1, true) ~= nil
    end,
    throttled_status = 429,
  },
}

-- privacyIDEA's answer: the "result" object's "value" ("true" or "false") when its "status" is true, else nil.
local function privacyidea_value(body)
  local result = string.match(body or "", '"result"%s*:%s*(%b{})')
  if result == nil or not string.find(result, '"status"%s*:%s*true') then
    return nil
  end
  return string.match(result, '"value"%s*:%s*(%a+)')
end

targets.privacyidea = {
  path = "/validate/check",
  fallback = "/healthz/livez",
  headers = function()
    return { ["Content-Type"] = "application/x-www-form-urlencoded" }
  end,
  -- Usernames (letters and digits) and codes (digits) need no percent-encoding.
  body = function(username, code)
    return "user=" .. username .. "&pass=" .. code
  end,
  accepted = function(status, body)
    return status == 200 and privacyidea_value(body) == "true"
  end,
  refused = function(status, body)
    return status == 200 and privacyidea_value(body) == "false"
  end,
  throttled_status = nil, -- privacyIDEA has no 429: one would be an error
}

local codes = dofile(os.getenv("BENCH_LUA_DIR") .. "/codes.lua")
local target, mode, headers, max_wrong
local users
local sends = {}

-- Counters read by done() through thread:get (numbers and strings copy across Lua states).
ok_count, rejected, throttled, errors, exhausted = 0, 0, 0, 0, 0
samples = ""
local sample_count = 0

function init(args)
  local target_name = os.getenv("BENCH_TARGET") or "nidan"
  target = targets[target_name]
  if target == nil then
    error("BENCH_TARGET: unknown target " .. target_name)
  end
  mode = os.getenv("BENCH_MODE")
  local path = os.getenv("BENCH_BODIES")
  local nthreads = tonumber(os.getenv("BENCH_THREADS"))
  max_wrong = tonumber(os.getenv("BENCH_MAX_WRONG") or "2")
  headers = target.headers()
  users = codes.load(path, nthreads, id)
  math.randomseed(os.time() * 1000 + id)
  for n = 1, users.count do
    sends[n] = 0
  end
end

-- BENCH_DELAY_MS (optional, valid and wrong modes): each connection waits this long on average after an answer
-- before it sends its next request (uniformly 0 to twice that, so that the connections do not fall into step and
-- arrive together), so the run goes at a set pace (about connections x 1000 / delay requests a second) instead of
-- as fast as the server answers. wrk times a request from its sending, so the wait is not in the latency.
local pace = tonumber(os.getenv("BENCH_DELAY_MS") or "")
if pace ~= nil and pace > 0 then
  function delay()
    return math.random(0, 2 * pace)
  end
end

local function body_for(username, code)
  return target.body(username, code)
end

local function next_valid()
  local username, code = codes.next_valid(users)
  if username == nil then
    return nil
  end
  return body_for(username, code)
end

local function next_wrong()
  if users.count == 0 then
    return nil
  end
  local cursor = users.cursor % users.count + 1
  users.cursor = cursor
  if sends[cursor] >= max_wrong then
    return nil -- round robin: every user has had as many
  end
  sends[cursor] = sends[cursor] + 1
  return body_for(users.usernames[cursor], users.codes[cursor][1])
end

function request()
  local body
  if mode == "valid" then
    body = next_valid()
  else
    body = next_wrong()
  end
  if body == nil then
    exhausted = exhausted + 1
    return wrk.format("GET", target.fallback)
  end
  return wrk.format("POST", target.path, headers, body)
end

local function sample(status, body)
  if sample_count < 5 then
    sample_count = sample_count + 1
    samples = samples .. "BENCH_SAMPLE " .. status .. " " .. string.gsub(body or "", "[\r\n]", " ") .. "\n"
  end
end

function response(status, headers, body)
  if mode == "valid" then
    if target.accepted(status, body) then
      ok_count = ok_count + 1
    else
      errors = errors + 1
      sample(status, body)
    end
  else
    if target.refused(status, body) then
      rejected = rejected + 1
    elseif status == target.throttled_status then
      throttled = throttled + 1
    else
      errors = errors + 1
      sample(status, body)
    end
  end
end

local report = dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

function done(summary, latency, requests)
  report.done(threads, { ok = "ok_count", rejected = "rejected", throttled = "throttled", errors = "errors",
      exhausted = "exhausted" }, summary, latency)
end
