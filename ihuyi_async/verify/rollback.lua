-- Undo a start whose send provably failed (one round trip, atomic).
-- KEYS[1]: the number's record. ARGV: code_hash (the start's), undo ('' = there was no record).
-- Changes nothing when a newer code was issued since. Returns 1 if undone, else 0.
local h = redis.call('HGET', KEYS[1], 'h')
if not h or string.match(h, '([^,]+)$') ~= ARGV[1] then
  return 0
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
  return 1
end
local oh, oa, on, os, oe = string.match(ARGV[2], '^([^|]*)|(%d+)|(%d+)|(%d+)|(%d+)$')
redis.call('HSET', KEYS[1], 'h', oh, 'a', oa, 'n', on, 's', os, 'e', oe)
return 1
