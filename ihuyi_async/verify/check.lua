-- Check a guess against the pending codes (one round trip, atomic).
-- KEYS[1]: the number's record (see start.lua). ARGV: code_hash, now_ms, max_attempts.
-- Returns {status, attempts_left}. Hashes are compared through SHA-1 of each side
-- (double hashing): the time a comparison takes tells nothing about the stored HMAC.
local v = redis.call('HMGET', KEYS[1], 'h', 'a', 'e')
if not v[1] or v[1] == '' then
  return {'not_found', 0}
end
local now = tonumber(ARGV[2])
local a = tonumber(v[2])
local max = tonumber(ARGV[3])
if now >= tonumber(v[3]) then
  return {'expired', 0}
end
if a >= max then
  return {'too_many_attempts', 0}
end
local given = redis.sha1hex(ARGV[1])
local matched = false
for stored in string.gmatch(v[1], '[^,]+') do
  if redis.sha1hex(stored) == given then
    matched = true
  end
end
if matched then
  redis.call('HSET', KEYS[1], 'h', '', 'a', '0', 'n', '0', 'e', '0')
  return {'approved', 0}
end
a = a + 1
redis.call('HSET', KEYS[1], 'a', string.format('%d', a))
return {'wrong', max - a}
