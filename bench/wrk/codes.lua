-- The users and codes a wrk thread sends, shared by verify.lua and signin.lua (loaded with dofile in each thread's
-- own Lua state; BENCH_LUA_DIR names this directory).
--
-- Input file: in valid mode a first line "# base STEP", then "username code code ..." where the k-th code (k from
-- 0) is the user's code for time step STEP+k, "-" for a step left out (its code equals a neighbour's within the
-- window, which would make the server match the other step); in wrong mode "username code" per line. Thread i
-- (0-based) of T takes the users on data lines i, i+T, i+2T, ...
--
-- A valid code is picked at send time from the current time step s = floor(os.time() / 30): nidan accepts a code
-- for steps s-1 .. s+1, each (user, step) once, rising per user. A user's next code is the lowest step not yet
-- sent that is >= s-1 (>= s in the last 5 s of a step, so a code is never sent just before it expires) and
-- <= s+1. Users are taken round robin, thousands per thread: a user's previous request has long been answered
-- before the user comes round again, so its steps reach the server in rising order.

local codes = {}

local function split(line)
  local fields = {}
  for field in string.gmatch(line, "%S+") do
    fields[#fields + 1] = field
  end
  return fields
end

-- This thread's users from the file at `path`: a table with usernames, codes (per user, the codes after the
-- name), next_step, count, base, and the picking state.
function codes.load(path, nthreads, id)
  local users = { usernames = {}, codes = {}, next_step = {}, count = 0, base = 0, cursor = 0, exhausted_step = nil }
  local file = assert(io.open(path, "r"))
  local index = 0
  for line in file:lines() do
    local header = string.match(line, "^# base (%d+)$")
    if header then
      users.base = tonumber(header)
    elseif line ~= "" then
      if index % nthreads == id then
        local fields = split(line)
        local n = users.count + 1
        users.count = n
        users.usernames[n] = fields[1]
        table.remove(fields, 1)
        users.codes[n] = fields
        users.next_step[n] = users.base
      end
      index = index + 1
    end
  end
  file:close()
  return users
end

-- The next user with a usable first-use code now, and that code, by the rule above; nil when none is left in this
-- time step (then not looked for again until the next one).
function codes.next_valid(users)
  if users.count == 0 then
    return nil
  end
  local now = os.time()
  local s = math.floor(now / 30)
  if users.exhausted_step == s then
    return nil
  end
  local low = s - 1
  if now % 30 >= 25 then
    low = s
  end
  local high = s + 1
  for _ = 1, users.count do
    local cursor = users.cursor % users.count + 1
    users.cursor = cursor
    local step = users.next_step[cursor]
    if step < low then
      step = low
    end
    local row = users.codes[cursor]
    while step <= high do
      local code = row[step - users.base + 1]
      if code == nil then
        break
      end
      if code ~= "-" then
        users.next_step[cursor] = step + 1
        return users.usernames[cursor], code
      end
      step = step + 1
    end
  end
  users.exhausted_step = s
  return nil
end

return codes
