-- Release a claim after a failed handler, only if it is still ours and not done.
-- KEYS[1]  the item's key
-- ARGV[1]  the claimant's token
-- Returns 1 when released, 0 otherwise.
local value = redis.call('GET', KEYS[1])
if value and string.sub(value, 1, 2) == 'P|' then
  local token = string.match(value, '^P|[^|]+|(.*)$')
  if token == ARGV[1] then
    redis.call('DEL', KEYS[1])
    return 1
  end
end
return 0
