-- Settle a claim the caller still owns (one round trip, atomic).
-- KEYS[1]: the key. ARGV: owner, record ('' to release the key), ttl_ms.
-- Returns 1 if settled, 0 if the caller no longer owned it (lease lost, or settled).
local v = redis.call('HMGET', KEYS[1], 'o', 'r')
if v[1] ~= ARGV[1] or v[2] then
  return 0
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 'r', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
