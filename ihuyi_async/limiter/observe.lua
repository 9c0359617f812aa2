-- ihuyi-async limiter: the provider said a limit is reached; make our rules agree.
--
-- KEYS[1], KEYS[2]  as in acquire.lua
-- ARGV[1]  now, integer microseconds; '' = use this server's TIME
-- ARGV[2..] six per rule, as in acquire.lua (the rules the provider's code names)
--
-- A bucket is emptied (next turn one period after now, per token); a fixed window
-- gets `limit` more sends in the window holding now; a rolling window gets `limit`
-- sends at now (full for one period). Adding (rather than setting) keeps the rule
-- full even if every reservation already counted is refunded later.
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local n = (#ARGV - 1) / 6
for i = 1, n do
  local b = 1 + (i - 1) * 6
  local alg = tonumber(ARGV[b + 1])
  local field = ARGV[b + 2]
  local limit = tonumber(ARGV[b + 3])
  local period = tonumber(ARGV[b + 4])
  local offset = tonumber(ARGV[b + 5])
  local k = KEYS[tonumber(ARGV[b + 6]) + 1]
  local until_
  if alg == 0 then
    local empty = now + limit * period
    local cur = tonumber(redis.call('HGET', k, field)) or 0
    if cur < empty then redis.call('HSET', k, field, string.format('%.0f', empty)) end
    until_ = math.max(cur, empty)
  elseif alg == 1 then
    local idx = math.floor((now + offset) / period)
    local v = redis.call('HMGET', k, field .. ':w', field .. ':n')
    local w = tonumber(v[1]) or -1
    if w >= idx then
      redis.call('HINCRBY', k, field .. ':n', limit)
    else
      redis.call('HSET', k, field .. ':w', string.format('%.0f', idx), field .. ':n', limit)
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
    for j = 1, #log do out[j] = string.format('%.0f', log[j]) end
    redis.call('HSET', k, field, table.concat(out, ' '))
    until_ = log[#log] + period
  end
  local ms = math.ceil((until_ - now) / 1000) + 1000
  if redis.call('PTTL', k) < ms then redis.call('PEXPIRE', k, ms) end
end
return 1
