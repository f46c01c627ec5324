-- Merges one batch of a replica's usage, exactly once: a batch that was
-- applied but whose answer was lost is sent again, and skipped here.
-- KEYS[1]: use counts (hash); KEYS[2]: last-used times (hash);
-- KEYS[3]: the batch's marker.
-- ARGV: key id, count, last-used time (unix seconds), repeated.
-- Returns 1 when the batch was applied now, 0 when it already had been.
if redis.call('SET', KEYS[3], '1', 'NX', 'EX', 86400) == false then
  return 0
end
for i = 1, #ARGV, 3 do
  local id = ARGV[i]
  redis.call('HINCRBY', KEYS[1], id, ARGV[i + 1])
  local last = tonumber(ARGV[i + 2])
  local seen = tonumber(redis.call('HGET', KEYS[2], id) or '0')
  if last > seen then
    redis.call('HSET', KEYS[2], id, last)
  end
end
return 1
