-- Mark a claim "sending" (its request is about to go out), if the caller still owns it.
-- KEYS[1]: the key. ARGV: owner. Returns 1 if marked.
local v = redis.call('HMGET', KEYS[1], 'o', 'r')
if v[1] ~= ARGV[1] or v[2] then
  return 0
end
redis.call('HSET', KEYS[1], 'w', '1')
return 1
