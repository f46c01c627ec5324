-- One rate-limit decision, atomically: at most ARGV[1] uses of the key in
-- any window of ARGV[2] microseconds. Times are the Redis server's, so the
-- replicas' clocks do not matter.
-- KEYS[1]: the key's window (a sorted set of use times).
-- ARGV[1]: count; ARGV[2]: period in microseconds; ARGV[3]: a unique member.
-- Returns {1, 0} when allowed, {0, microseconds until a use is free} when not.
local count = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - period)
if redis.call('ZCARD', KEYS[1]) < count then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(period / 1000) + 1)
  return {1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, math.max(1, tonumber(oldest[2]) + period - now)}
