-- wrk script for nidan's full sign-in: POST /api/v1/auth/login (password), then POST /api/v1/auth/mfa (a TOTP code).
--
-- Run it with as many threads as connections (wrk -t C -c C): wrk gives each thread its own Lua state and here one
-- connection, so the state's requests and responses alternate and it can chain login -> mfa -> next login
-- (response() is not told which connection answered, so a state with several could not).
--
-- Environment (read in every thread):
--   BENCH_BODIES    the input file, in wrk/verify.lua's valid-mode format: a first line "# base STEP", then
--                   "username code code ..." where the k-th code is the user's code for step STEP+k, "-" for a
--                   step left out (bench/loadgen.py write_valid_codes writes it)
--   BENCH_THREADS   wrk's -t: thread i (0-based) takes the users on data lines i, i+T, i+2T, ...
--   BENCH_PASSWORD  every user's password
--
-- Each sign-in uses a first-use code picked as verify.lua's valid mode picks it (see its header): at login time, the
-- user's lowest unsent step that is >= s-1 (>= s in the last 5 s of a step) and <= s+1, users round robin. The
-- code is sent right after the login's answer, well within the 5 s that rule leaves.
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

local headers, password
local usernames, codes, next_step = {}, {}, {}
local base = 0
local count = 0
local cursor = 0
local exhausted_step = nil

-- "login": the next request starts a sign-in; "mfa": it sends mfa_body; "idle": a /healthz was sent.
local phase = "login"
local code_for_mfa = nil
local mfa_body = nil

-- Counters read by done() through thread:get (numbers and strings copy across Lua states).
signins, logins, throttled, errors, exhausted = 0, 0, 0, 0, 0
samples = ""
local sample_count = 0

local function split(line)
  local fields = {}
  for field in string.gmatch(line, "%S+") do
    fields[#fields + 1] = field
  end
  return fields
end

function init(args)
  local path = os.getenv("BENCH_BODIES")
  local nthreads = tonumber(os.getenv("BENCH_THREADS"))
  password = os.getenv("BENCH_PASSWORD")
  headers = { ["Content-Type"] = "application/json" }
  local file = assert(io.open(path, "r"))
  local index = 0
  for line in file:lines() do
    local header = string.match(line, "^# base (%d+)$")
    if header then
      base = tonumber(header)
    elseif line ~= "" then
      if index % nthreads == id then
        local fields = split(line)
        count = count + 1
        usernames[count] = fields[1]
        table.remove(fields, 1)
        codes[count] = fields
        next_step[count] = base
      end
      index = index + 1
    end
  end
  file:close()
end

-- The next user with a usable code now, and that code (verify.lua's rule); nil when none is left.
local function next_valid()
  if count == 0 then
    return nil
  end
  local now = os.time()
  local s = math.floor(now / 30)
  if exhausted_step == s then
    return nil
  end
  local low = s - 1
  if now % 30 >= 25 then
    low = s
  end
  local high = s + 1
  for _ = 1, count do
    cursor = cursor % count + 1
    local step = next_step[cursor]
    if step < low then
      step = low
    end
    local row = codes[cursor]
    while step <= high do
      local code = row[step - base + 1]
      if code == nil then
        break
      end
      if code ~= "-" then
        next_step[cursor] = step + 1
        return usernames[cursor], code
      end
      step = step + 1
    end
  end
  exhausted_step = s
  return nil
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

function done(summary, latency, requests)
  local totals = { signins = 0, logins = 0, throttled = 0, errors = 0, exhausted = 0 }
  for _, thread in ipairs(threads) do
    for name, _ in pairs(totals) do
      totals[name] = totals[name] + thread:get(name)
    end
    io.write(thread:get("samples"))
  end
  local e = summary.errors
  io.write(string.format(
    '\nBENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},"non_2xx":%d,'
      .. '"ok":%d,"signins":%d,"logins":%d,"rejected":0,"throttled":%d,"errors":%d,"exhausted":%d,'
      .. '"latency_us":{"min":%d,"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p99_9":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.timeout, e.status,
    totals.signins, totals.signins, totals.logins, totals.throttled, totals.errors, totals.exhausted,
    latency.min, latency.mean, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)
  ))
end
