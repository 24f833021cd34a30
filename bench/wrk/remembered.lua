-- wrk script for nidan's sign-in on a remembered device: POST /api/v1/auth/login with the password AND the device's
-- token, one request per sign-in, no second step.
--
-- Run it with as many threads as connections (wrk -t C -c C), as signin.lua: wrk gives each thread its own Lua state
-- and here one connection, so a state's requests and answers alternate. Each answer carries the device's NEXT token
-- (the one sent stops working; sending it again would forget the device), so a user's sign-ins must go one after the
-- other, each with the token the previous answer gave: one connection owns its users and keeps their tokens.
--
-- Environment (read in every thread):
--   BENCH_BODIES    the input file: "username device_token" per line (bench/nidan_bench.py writes it from the
--                   devices bench/seeding.py remembered)
--   BENCH_THREADS   wrk's -t: thread i (0-based) takes the users on lines i, i+T, i+2T, ...
--   BENCH_PASSWORD  every user's password
--
-- Users are taken round robin, and come round again as often as the run needs (a token chain has no end).
--
-- Every answer is checked: 200 "authenticated" with "second_factor":"remembered_device", a session token and the
-- next device token. Anything else is an error, "mfa_required" included (the token was not taken: the device is
-- unknown, expired or forgotten). A user whose sign-in failed is dropped: whether its token rotated is unknown, and
-- sending it again could forget the device. When every user of a thread is dropped, request() counts it in
-- `exhausted` and sends GET /healthz instead; the Python side fails the run then.

local thread_counter = 0
local threads = {}

function setup(thread)
  thread:set("id", thread_counter)
  thread_counter = thread_counter + 1
  table.insert(threads, thread)
end

local headers, password
local usernames, tokens, live = {}, {}, {}
local count, cursor = 0, 0
-- The user whose sign-in is in flight (nil: a /healthz was sent).
local current = nil

-- Counters read by done() through thread:get (numbers and strings copy across Lua states).
signins, throttled, errors, exhausted = 0, 0, 0, 0
samples = ""
local sample_count = 0

function init(args)
  local nthreads = tonumber(os.getenv("BENCH_THREADS"))
  password = os.getenv("BENCH_PASSWORD")
  headers = { ["Content-Type"] = "application/json" }
  local file = assert(io.open(os.getenv("BENCH_BODIES"), "r"))
  local index = 0
  for line in file:lines() do
    local username, token = string.match(line, "^(%S+)%s+(%S+)$")
    if username ~= nil then
      if index % nthreads == id then
        count = count + 1
        usernames[count], tokens[count], live[count] = username, token, true
      end
      index = index + 1
    end
  end
  file:close()
end

-- The next user still signing in, round robin; nil when none is left.
local function next_user()
  for _ = 1, count do
    cursor = cursor % count + 1
    if live[cursor] then
      return cursor
    end
  end
  return nil
end

function request()
  current = next_user()
  if current == nil then
    exhausted = exhausted + 1
    return wrk.format("GET", "/healthz")
  end
  return wrk.format("POST", "/api/v1/auth/login", headers,
    '{"username":"' .. usernames[current] .. '","password":"' .. password .. '","device_token":"' .. tokens[current]
      .. '"}')
end

local function sample(status, body)
  if sample_count < 5 then
    sample_count = sample_count + 1
    samples = samples .. "BENCH_SAMPLE remembered " .. status .. " " .. string.gsub(body or "", "[\r\n]", " ") .. "\n"
  end
end

-- The next device token when `body` is a sign-in a remembered device stood in for; else nil.
local function next_token(status, body)
  if status ~= 200 or not string.find(body, '"status"%s*:%s*"authenticated"')
    or not string.find(body, '"second_factor"%s*:%s*"remembered_device"')
    or not string.find(body, '"session_token"%s*:%s*"nidan_s_') then
    return nil
  end
  return string.match(body, '"device_token"%s*:%s*"(nidan_d_[^"]+)"')
end

function response(status, headers, body)
  if current == nil then
    return -- the /healthz sent when no user was left
  end
  local token = next_token(status, body)
  if token == nil then
    if status == 429 then
      throttled = throttled + 1
    end
    errors = errors + 1
    live[current] = false
    sample(status, body)
    return
  end
  tokens[current] = token
  signins = signins + 1
end

local report = dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

function done(summary, latency, requests)
  report.done(threads, { ok = "signins", signins = "signins", throttled = "throttled", errors = "errors",
      exhausted = "exhausted" }, summary, latency)
end
