-- Issue a verification code, or refuse (one round trip, atomic).
-- KEYS[1]: the number's record (a hash: h = code hashes joined by ',', a = wrong guesses,
--          n = codes sent for this verification, s = last send ms, e = expiry ms).
-- ARGV: code_hash, now_ms, lifetime_ms, resend_ms, max_sends, max_attempts, keep ('1'/'0').
-- Returns {'issued', sends, expires_ms, undo} or {'too_soon', retry_ms, scope}.
-- Times are the caller's (the Verifier's clock), so tests own time.
local now = tonumber(ARGV[2])
local lifetime = tonumber(ARGV[3])
local resend = tonumber(ARGV[4])
local v = redis.call('HMGET', KEYS[1], 'h', 'a', 'n', 's', 'e')
local h = v[1] or ''
local a = tonumber(v[2] or '0')
local n = tonumber(v[3] or '0')
local s = tonumber(v[4] or '0')
local e = tonumber(v[5] or '0')
local undo = ''
if v[4] then
  undo = h .. '|' .. string.format('%d|%d|%d|%d', a, n, s, e)
  if now < s + resend then
    return {'too_soon', string.format('%d', s + resend), 'resend'}
  end
end
local live = h ~= '' and now < e and a < tonumber(ARGV[6])
if live and n >= tonumber(ARGV[5]) then
  return {'too_soon', string.format('%d', e), 'verification'}
end
if live then
  n = n + 1
  if ARGV[7] == '1' then h = h .. ',' .. ARGV[1] else h = ARGV[1] end
else
  h = ARGV[1]
  a = 0
  n = 1
end
e = now + lifetime
redis.call('HSET', KEYS[1], 'h', h, 'a', string.format('%d', a), 'n', string.format('%d', n),
  's', string.format('%d', now), 'e', string.format('%d', e))
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.max(e, now + resend) + lifetime - now))
return {'issued', string.format('%d', n), string.format('%d', e), undo}
