-- Merges one batch of a replica's usage, exactly once: a batch that was
-- applied but whose answer was lost is sent again, and skipped here.
-- KEYS[1]: use counts (hash); KEYS[2]: last-used times (hash);
-- KEYS[3]: the batch's marker; KEYS[4]: uses per hour (hash of JSON
-- windows {"hour": H, "counts": [24 numbers, oldest first]}, the last slot
-- being hour H); KEYS[5]: the service and address of each key's last use
-- (hash of JSON {"last_service": S, "last_address": A}, either left out).
-- ARGV: key id, count, last-used time (unix seconds), the key's hourly
-- window as JSON, its last use's service and address as JSON, repeated.
-- Returns 1 when the batch was applied now, 0 when it already had been.
local HOURS = 24

-- A window, or nil when it is not one (nothing is written for a bad one).
local function window(json)
  local ok, w = pcall(cjson.decode, json)
  if not ok or type(w) ~= 'table' or type(w.hour) ~= 'number' or type(w.counts) ~= 'table' then
    return nil
  end
  for slot = 1, HOURS do
    local n = w.counts[slot]
    if n ~= nil and (type(n) ~= 'number' or n < 0) then return nil end
  end
  return w
end

-- Everything is read and checked before the first write: a script that
-- fails half-way would leave the batch half-applied and marked as done.
local adds = {}
for i = 1, #ARGV, 5 do
  local add = window(ARGV[i + 3])
  local authn_ok, authn = pcall(cjson.decode, ARGV[i + 4] or '')
  if add == nil or tonumber(ARGV[i + 1]) == nil or tonumber(ARGV[i + 2]) == nil
    or not authn_ok or type(authn) ~= 'table' then
    return redis.error_reply('keyhost: a malformed usage batch')
  end
  adds[i] = add
end
if redis.call('SET', KEYS[3], '1', 'NX', 'EX', 86400) == false then
  return 0
end
for i = 1, #ARGV, 5 do
  local id = ARGV[i]
  redis.call('HINCRBY', KEYS[1], id, ARGV[i + 1])
  local last = tonumber(ARGV[i + 2])
  local seen = tonumber(redis.call('HGET', KEYS[2], id) or '0')
  if last > seen then
    redis.call('HSET', KEYS[2], id, last)
    redis.call('HSET', KEYS[5], id, ARGV[i + 4])
  end
  -- Slot s of a window whose last hour is L holds hour L - (HOURS - s). The
  -- merged window ends at the later of the two last hours; hours that fall
  -- out of it are dropped. A stored window that is not one starts over.
  local add = adds[i]
  local into = window(redis.call('HGET', KEYS[4], id) or '') or { hour = add.hour, counts = {} }
  local latest = math.max(into.hour, add.hour)
  local counts = {}
  for slot = 1, HOURS do
    local n = 0
    local from_into = slot + (latest - into.hour)
    local from_add = slot + (latest - add.hour)
    if from_into <= HOURS then n = n + (into.counts[from_into] or 0) end
    if from_add <= HOURS then n = n + (add.counts[from_add] or 0) end
    counts[slot] = n
  end
  redis.call('HSET', KEYS[4], id, cjson.encode({ hour = latest, counts = counts }))
end
return 1
