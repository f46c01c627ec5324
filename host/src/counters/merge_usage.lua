-- Merges one batch of a replica's usage, exactly once: a batch that was
-- applied but whose answer was lost is sent again, and skipped here.
-- KEYS[1]: use counts (hash); KEYS[2]: last-used times (hash);
-- KEYS[3]: the batch's marker; KEYS[4]: uses per hour (hash of JSON
-- windows {"hour": H, "counts": [24 numbers, oldest first]}).
-- ARGV: key id, count, last-used time (unix seconds), the key's hourly
-- window as JSON, repeated.
-- Returns 1 when the batch was applied now, 0 when it already had been.
if redis.call('SET', KEYS[3], '1', 'NX', 'EX', 86400) == false then
  return 0
end
local HOURS = 24
for i = 1, #ARGV, 4 do
  local id = ARGV[i]
  redis.call('HINCRBY', KEYS[1], id, ARGV[i + 1])
  local last = tonumber(ARGV[i + 2])
  local seen = tonumber(redis.call('HGET', KEYS[2], id) or '0')
  if last > seen then
    redis.call('HSET', KEYS[2], id, last)
  end
  -- The stored window moves forward to the later of the two latest hours;
  -- hours that fall out of it are dropped.
  local add = cjson.decode(ARGV[i + 3])
  local stored = redis.call('HGET', KEYS[4], id)
  local into = stored and cjson.decode(stored) or { hour = add.hour, counts = {} }
  local latest = math.max(into.hour, add.hour)
  local counts = {}
  for slot = 1, HOURS do
    local hour = latest - (HOURS - slot)
    local from_into = slot + (into.hour - latest)
    local from_add = slot + (add.hour - latest)
    local n = 0
    if from_into >= 1 and from_into <= HOURS then n = n + (tonumber(into.counts[from_into]) or 0) end
    if from_add >= 1 and from_add <= HOURS then n = n + (tonumber(add.counts[from_add]) or 0) end
    counts[slot] = n
  end
  redis.call('HSET', KEYS[4], id, cjson.encode({ hour = latest, counts = counts }))
end
return 1
