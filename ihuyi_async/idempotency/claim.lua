-- Claim an idempotency key (one round trip, atomic).
-- KEYS[1]: the key (a hash: f = fingerprint, o = owner, u = lease end in ms, r = record,
--          w = 1 once the owner's request was about to go out).
-- ARGV: fingerprint, owner, lease_ms, ttl_ms, lost_record.
-- Returns {state, record}: claimed | mismatch | done (with the record) | in_flight.
-- Times are the Redis server's (TIME): one clock for every worker.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('HMGET', KEYS[1], 'f', 'o', 'u', 'r', 'w')
if not v[1] then
  redis.call('HSET', KEYS[1], 'f', ARGV[1], 'o', ARGV[2], 'u', now + tonumber(ARGV[3]))
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return {'claimed', ''}
end
if v[1] ~= ARGV[1] then
  return {'mismatch', ''}
end
if v[4] then
  return {'done', v[4]}
end
if tonumber(v[3]) <= now and not v[5] then
  -- the owner died before its request could go out: the key is free, take it over
  redis.call('HSET', KEYS[1], 'o', ARGV[2], 'u', now + tonumber(ARGV[3]))
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return {'claimed', ''}
end
if tonumber(v[3]) <= now then
  -- the owner held it past its lease after it started sending: the outcome is unknown
  redis.call('HSET', KEYS[1], 'r', ARGV[5])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return {'done', ARGV[5]}
end
return {'in_flight', ''}
