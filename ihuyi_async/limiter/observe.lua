-- ihuyi-async limiter: the provider said a limit is reached; make our rules agree.
--
-- KEYS[1], KEYS[2]  as in prelude.lua
-- ARGV[1]  now, integer microseconds; '' = use this server's TIME
-- ARGV[2..] six per rule, as in prelude.lua (the rules the provider's code names)
--
-- A bucket is emptied (next turn one period after now, per token); a fixed window
-- gets `limit` more sends in the window holding now; a rolling window gets `limit`
-- sends at now (full for one period). Adding (rather than setting) keeps the rule
-- full even if every reservation already counted is refunded later.
local now = clock_now(ARGV[1])
local n = (#ARGV - 1) / 6
for i = 1, n do
  local alg, field, limit, period, offset, k = rule_at(1 + (i - 1) * 6)
  local until_
  if alg == 0 then
    local empty = now + limit * period
    local cur = tonumber(redis.call('HGET', k, field)) or 0
    if cur < empty then redis.call('HSET', k, field, us(empty)) end
    until_ = math.max(cur, empty)
  elseif alg == 1 then
    local idx = math.floor((now + offset) / period)
    local v = redis.call('HMGET', k, field .. ':w', field .. ':n')
    local w = tonumber(v[1]) or -1
    if w >= idx then
      redis.call('HINCRBY', k, field .. ':n', limit)
    else
      redis.call('HSET', k, field .. ':w', us(idx), field .. ':n', limit)
    end
    until_ = (math.max(w, idx) + 1) * period - offset
  else
    local log = {}
    local raw = redis.call('HGET', k, field)
    if raw then
      for w in string.gmatch(raw, '%S+') do
        local v = tonumber(w)
        if v > now - period then log[#log + 1] = v end
      end
    end
    for _ = 1, limit do log[#log + 1] = now end
    table.sort(log)
    local out = {}
    for j = 1, #log do out[j] = us(log[j]) end
    redis.call('HSET', k, field, table.concat(out, ' '))
    until_ = log[#log] + period
  end
  keep_until(k, until_, now)
end
return 1
