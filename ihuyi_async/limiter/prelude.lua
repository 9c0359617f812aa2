-- ihuyi-async limiter: the prelude every limiter script starts with (joined at load time).
--
-- KEYS[1]  the number's hash     <prefix>{<mobile>}
-- KEYS[2]  the content's hash    <prefix>{<mobile>}:c:<digest>  (same slot: hash tag)
-- A rule travels as six ARGV entries, buckets first: algorithm (0 token bucket,
-- 1 fixed window, 2 rolling window), field, limit, period (us; a bucket: its
-- interval, period + margin), offset (us), scope (0 number, 1 content).
-- Times are integer microseconds (written with %.0f: never lose digits).

-- the time to use: ARGV's value, or this server's TIME when it is ''
local function clock_now(arg)
  if arg == '' then
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  return tonumber(arg)
end

-- the rule whose six entries follow ARGV[b]: alg, field, limit, period, offset, key
local function rule_at(b)
  return tonumber(ARGV[b + 1]), ARGV[b + 2], tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4]),
    tonumber(ARGV[b + 5]), KEYS[tonumber(ARGV[b + 6]) + 1]
end

local function us(v)
  return string.format('%.0f', v)
end

-- extend (never shorten) a key's TTL so it lives until `until_` plus one second
local function keep_until(k, until_, now)
  local ms = math.ceil((until_ - now) / 1000) + 1000
  if redis.call('PTTL', k) < ms then redis.call('PEXPIRE', k, ms) end
end
