-- wrk script for nidan's full sign-in: POST /api/v1/auth/login (password), then POST /api/v1/auth/mfa (a TOTP code).
--
-- Run it with as many threads as connections (wrk -t C -c C): wrk gives each thread its own Lua state and here one
-- connection, so the state's requests and responses alternate and it can chain login -> mfa -> next login
-- (response() is not told which connection answered, so a state with several could not).
--
-- Environment (read in every thread):
--   BENCH_BODIES    the input file, in codes.lua's valid-mode format (bench/loadgen.py write_valid_codes writes it)
--   BENCH_THREADS   wrk's -t: thread i (0-based) takes the users on data lines i, i+T, i+2T, ...
--   BENCH_PASSWORD  every user's password
--
-- Each sign-in uses a first-use code picked at login time by codes.lua's rule (shared with verify.lua); the code is
-- sent right after the login's answer, well within the 5 s that rule leaves.
--
-- Every answer is checked: the login must answer 200 "mfa_required" with an mfa_token, the mfa step 200
-- "authenticated" with a session token. Anything else (a 429 too: none is expected) is an error. A sign-in is
-- counted when its mfa step answered a session. When no user has a usable code left, request() counts it in
-- `exhausted` and sends GET /healthz instead; the Python side fails the run then.

local thread_counter = 0
local threads = {}

function setup(thread)
  thread:set("id", thread_counter)
  thread_counter = thread_counter + 1
  table.insert(threads, thread)
end

local codes = dofile(os.getenv("BENCH_LUA_DIR") .. "/codes.lua")
local headers, password
local users

-- "login": the next request starts a sign-in; "mfa": it sends mfa_body; "idle": a /healthz was sent.
local phase = "login"
local code_for_mfa = nil
local mfa_body = nil

-- Counters read by done() through thread:get (numbers and strings copy across Lua states).
signins, logins, throttled, errors, exhausted = 0, 0, 0, 0, 0
samples = ""
local sample_count = 0

function init(args)
  local path = os.getenv("BENCH_BODIES")
  local nthreads = tonumber(os.getenv("BENCH_THREADS"))
  password = os.getenv("BENCH_PASSWORD")
  headers = { ["Content-Type"] = "application/json" }
  users = codes.load(path, nthreads, id)
end

local function next_valid()
  return codes.next_valid(users)
end

function request()
  if phase == "mfa" then
    return wrk.format("POST", "/api/v1/auth/mfa", headers, mfa_body)
  end
  local username, code = next_valid()
  if username == nil then
    exhausted = exhausted + 1
    phase = "idle"
    return wrk.format("GET", "/healthz")
  end
  phase = "login"
  code_for_mfa = code
  return wrk.format(
    "POST", "/api/v1/auth/login", headers, '{"username":"' .. username .. '","password":"' .. password .. '"}'
  )
end

local function sample(what, status, body)
  if sample_count < 5 then
    sample_count = sample_count + 1
    samples = samples .. "BENCH_SAMPLE " .. what .. " " .. status .. " " .. string.gsub(body or "", "[\r\n]", " ")
      .. "\n"
  end
end

local function failed(what, status, body)
  if status == 429 then
    throttled = throttled + 1
  end
  errors = errors + 1
  sample(what, status, body)
  phase = "login"
end

function response(status, headers, body)
  if phase == "login" then
    local token = nil
    if status == 200 and string.find(body, '"status"%s*:%s*"mfa_required"') then
      token = string.match(body, '"mfa_token"%s*:%s*"([^"]+)"')
    end
    if token == nil then
      return failed("login", status, body)
    end
    logins = logins + 1
    mfa_body = '{"mfa_token":"' .. token .. '","method":"totp","code":"' .. code_for_mfa .. '"}'
    phase = "mfa"
  elseif phase == "mfa" then
    if status == 200 and string.find(body, '"status"%s*:%s*"authenticated"')
      and string.find(body, '"session_token"%s*:%s*"nidan_s_') then
      signins = signins + 1
      phase = "login"
    else
      failed("mfa", status, body)
    end
  else
    phase = "login"
  end
end

local report = dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

function done(summary, latency, requests)
  report.done(threads, { ok = "signins", signins = "signins", logins = "logins", throttled = "throttled", errors = "errors",
      exhausted = "exhausted" }, summary, latency)
end
