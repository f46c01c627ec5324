-- One rate-limit decision, atomically: at most ARGV[1] uses of the key in
-- any window of ARGV[2] microseconds. Times are the Redis server's, so the
-- replicas' clocks do not matter. A caller may take up to ARGV[4] uses at
-- once (a lease it spends by itself), never more than the window has left.
-- Each grant is one member of the window, `PREFIX:USES`, so a large limit
-- costs one member per lease, not one per use.
-- KEYS[1]: the window's grants (a sorted set scored by time, microseconds).
-- KEYS[2]: how many uses the grants in the window hold.
-- ARGV[1]: count; ARGV[2]: period in microseconds; ARGV[3]: a unique member
-- prefix; ARGV[4]: the most uses to take.
-- Returns {uses taken, 0}, or {0, microseconds until a use is free}.
local count = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local wanted = tonumber(ARGV[4])
local ttl = math.ceil(period / 1000) + 1
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local edge = now - period
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', edge)
local gone = 0
for _, member in ipairs(expired) do
  gone = gone + tonumber(string.match(member, ':(%d+)$'))
end
if #expired > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', edge)
end
local used = math.max(0, tonumber(redis.call('GET', KEYS[2]) or '0') - gone)
local free = count - used
if free > 0 then
  local taken = math.min(free, wanted)
  redis.call('ZADD', KEYS[1], now, ARGV[3] .. ':' .. taken)
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('SET', KEYS[2], used + taken, 'PX', ttl)
  return {taken, 0}
end
if gone > 0 then
  redis.call('SET', KEYS[2], used, 'KEEPTTL')
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, math.max(1, tonumber(oldest[2]) + period - now)}
