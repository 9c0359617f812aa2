-- ihuyi-async limiter: reserve one send for one number, atomically, in one call.
--
-- KEYS, rules, times: see prelude.lua
-- ARGV[1]  now, integer microseconds; '' = use this server's TIME
-- ARGV[2]  longest wait allowed, microseconds (0 = never wait)
-- ARGV[3]  '1' take, '0' peek (earliest time a send would be granted; changes nothing)
-- ARGV[4..] six per rule (prelude.lua)
--
-- State, all integers in microseconds:
--   bucket  <field>     theoretical arrival time (GCRA)
--   fixed   <field>:w   window index, <field>:n  count in that window
--   rolling <field>     sorted, space-separated send times
--
-- Returns {1, now, send_at, undo...}   granted (undo: each bucket's state before)
--         {0, now, rule, retry_at, resets_at}   refused (rule: 1-based in ARGV)
--         {2, now, earliest}   peek
local now = clock_now(ARGV[1])
local maxd = tonumber(ARGV[2])
local take = ARGV[3] == '1'
local n = (#ARGV - 3) / 6

local alg, field, limit, period, offset, key, st, cnt = {}, {}, {}, {}, {}, {}, {}, {}
for i = 1, n do
  alg[i], field[i], limit[i], period[i], offset[i], key[i] = rule_at(3 + (i - 1) * 6)
  if alg[i] == 0 then
    st[i] = tonumber(redis.call('HGET', key[i], field[i])) or 0
  elseif alg[i] == 1 then
    local v = redis.call('HMGET', key[i], field[i] .. ':w', field[i] .. ':n')
    st[i] = tonumber(v[1]) or -1
    cnt[i] = tonumber(v[2]) or 0
  else
    local log = {}
    local raw = redis.call('HGET', key[i], field[i])
    if raw then
      for w in string.gmatch(raw, '%S+') do log[#log + 1] = tonumber(w) end
    end
    st[i] = log
  end
end

-- earliest turn of every bucket at or after t, then which window blocks it
local function schedule(t)
  local send, bucket = t, 0
  for i = 1, n do
    if alg[i] == 0 then
      local e = st[i] - (limit[i] - 1) * period[i]
      if e > send then send, bucket = e, i end
    end
  end
  local refused, at = 0, -1
  for i = 1, n do
    if alg[i] == 1 then
      local idx = math.floor((send + offset[i]) / period[i])
      if st[i] >= idx and cnt[i] >= limit[i] then
        local finish = (st[i] + 1) * period[i] - offset[i]
        if finish > at then refused, at = i, finish end
      end
    elseif alg[i] == 2 then
      local log, active = st[i], 0
      for j = 1, #log do
        if log[j] > send - period[i] then active = active + 1 end
      end
      if active >= limit[i] then
        local free = log[#log - limit[i] + 1] + period[i]
        if free > at then refused, at = i, free end
      end
    end
  end
  return send, bucket, refused, at
end

if not take then
  local t = now
  for _ = 1, 32 do
    local send, _b, refused, at = schedule(t)
    if refused == 0 then return {2, now, send} end
    t = at
  end
  return {2, now, t}
end

local send, bucket, refused, at = schedule(now)
if refused > 0 then return {0, now, refused, at, at} end
if send - now > maxd then return {0, now, bucket, send, send} end

local out = {1, now, send}
local ttl = {}
local function keep(k, until_)
  if ttl[k] == nil or until_ > ttl[k] then ttl[k] = until_ end
end
for i = 1, n do
  local k = key[i]
  if alg[i] == 0 then
    out[#out + 1] = st[i]
    local tat = math.max(st[i], send) + period[i]
    redis.call('HSET', k, field[i], us(tat))
    keep(k, tat)
  elseif alg[i] == 1 then
    local idx = math.floor((send + offset[i]) / period[i])
    if st[i] >= idx then
      redis.call('HINCRBY', k, field[i] .. ':n', 1)
      idx = st[i]
    else
      redis.call('HSET', k, field[i] .. ':w', us(idx), field[i] .. ':n', 1)
    end
    keep(k, (idx + 1) * period[i] - offset[i])
  else
    local kept = {}
    local placed = false
    for _, v in ipairs(st[i]) do
      if v > now - period[i] then
        if not placed and v > send then
          kept[#kept + 1] = us(send)
          placed = true
        end
        kept[#kept + 1] = us(v)
      end
    end
    if not placed then kept[#kept + 1] = us(send) end
    redis.call('HSET', k, field[i], table.concat(kept, ' '))
    keep(k, send + period[i])
  end
end
-- every key expires once its last state no longer matters (only ever extended)
for k, until_ in pairs(ttl) do keep_until(k, until_, now) end
return out
