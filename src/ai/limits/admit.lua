-- Admits one call in every scope it names, or refuses it in the first scope that is full;
-- a refusal takes nothing from any scope. Step for step what the in-memory Limiter in
-- src/ai/limits.rs does, so a tenant meets the same limits whichever is in use. Time is the
-- server's (ARGV[1]), never Redis's, so every node and the tests' clock agree.
--
-- KEYS, three per scope: the token bucket (hash: t = tokens, at = when), the calls in
-- progress (sorted set: permit id scored by when its lease ends), the day's token count.
-- ARGV: now_us, lease_until_us, permit id, lease_secs, scopes; then per scope:
-- rps (-1: none), bucket size, concurrent (-1: none), tokens_per_day (-1: none).
-- Returns {0, 0, 0} when admitted; else {kind, scope index, retry after in seconds} with
-- kind 1 = tokens per day, 2 = concurrent calls, 3 = requests per second.

local now = tonumber(ARGV[1])
local n = tonumber(ARGV[5])
local refilled = {}

for i = 0, n - 1 do
  local bucket, flight, day = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  local rps = tonumber(ARGV[6 + 4 * i])
  local cap = tonumber(ARGV[7 + 4 * i])
  local concurrent = tonumber(ARGV[8 + 4 * i])
  local per_day = tonumber(ARGV[9 + 4 * i])

  if per_day >= 0 then
    local used = tonumber(redis.call('GET', day) or '0')
    if used >= per_day then
      return {1, i, 0}
    end
  end

  -- Leases past their end are calls of a node that died before it could say they ended.
  redis.call('ZREMRANGEBYSCORE', flight, '-inf', ARGV[1])
  if concurrent >= 0 and redis.call('ZCARD', flight) >= concurrent then
    return {2, i, 0}
  end

  if rps > 0 then
    local state = redis.call('HMGET', bucket, 't', 'at')
    local t = cap
    if state[1] and state[2] then
      local elapsed = math.max(now - tonumber(state[2]), 0) / 1e6
      t = math.min(tonumber(state[1]) + elapsed * rps, cap)
    end
    if t < 1 then
      return {3, i, math.ceil((1 - t) / rps)}
    end
    refilled[i] = t
  end
end

for i = 0, n - 1 do
  local bucket, flight = KEYS[3 * i + 1], KEYS[3 * i + 2]
  local t = refilled[i]
  if t then
    local rps = tonumber(ARGV[6 + 4 * i])
    local cap = tonumber(ARGV[7 + 4 * i])
    redis.call('HSET', bucket, 't', string.format('%.17g', t - 1), 'at', ARGV[1])
    -- Idle this long the bucket is full again, which is what a missing key reads as; an
    -- hour more, since Redis counts real seconds and the server's clock may be a test's.
    redis.call('EXPIRE', bucket, math.ceil(cap / rps) + 3600)
  end
  redis.call('ZADD', flight, ARGV[2], ARGV[3])
  redis.call('EXPIRE', flight, ARGV[4])
end
return {0, 0, 0}
