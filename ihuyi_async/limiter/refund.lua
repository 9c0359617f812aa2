-- ihuyi-async limiter: give back what one reservation took, in one call.
--
-- KEYS[1], KEYS[2]  as in prelude.lua
-- ARGV[1]  the reservation's send time, integer microseconds
-- ARGV[2..] seven per rule, the six of prelude.lua plus the rule's undo value
--          (a bucket's state before the reservation; 0 for windows)
--
-- A window gets its count back when the send's window is still the current one;
-- a rolling window drops the send's time; a bucket gets its turn back only when no
-- later reservation stacked behind it (later turns never move).
local send = tonumber(ARGV[1])
local n = (#ARGV - 1) / 7
for i = 1, n do
  local b = 1 + (i - 1) * 7
  local alg, field, _limit, period, offset, k = rule_at(b)
  if alg == 0 then
    local before = tonumber(ARGV[b + 7])
    local cur = tonumber(redis.call('HGET', k, field))
    if cur ~= nil and cur == math.max(before, send) + period then
      if before <= 0 then
        redis.call('HDEL', k, field)
      else
        redis.call('HSET', k, field, us(before))
      end
    end
  elseif alg == 1 then
    local v = redis.call('HMGET', k, field .. ':w', field .. ':n')
    local idx = math.floor((send + offset) / period)
    if tonumber(v[1]) == idx and (tonumber(v[2]) or 0) > 0 then
      redis.call('HINCRBY', k, field .. ':n', -1)
    end
  else
    local raw = redis.call('HGET', k, field)
    if raw then
      local kept, removed = {}, false
      for w in string.gmatch(raw, '%S+') do
        if not removed and tonumber(w) == send then
          removed = true
        else
          kept[#kept + 1] = w
        end
      end
      redis.call('HSET', k, field, table.concat(kept, ' '))
    end
  end
end
return 1
