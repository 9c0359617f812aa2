-- Claim a push for handling, or report that it is in progress or done.
-- KEYS[1]  the item's key
-- ARGV[1]  the claimant's token
-- ARGV[2]  now (Unix seconds, the receiver's clock)
-- ARGV[3]  the claim's logical expiry (now + lease)
-- ARGV[4]  physical expiry in milliseconds (a backstop for cleanup)
-- Values: "P|<until>|<token>" (in progress) or "D|<until>" (handled).
-- Returns 0 claimed, 1 in progress elsewhere, 2 already handled.
local value = redis.call('GET', KEYS[1])
if value then
  local state, expiry = string.match(value, '^([PD])|([^|]+)')
  if state and tonumber(expiry) and tonumber(expiry) > tonumber(ARGV[2]) then
    if state == 'D' then
      return 2
    end
    return 1
  end
end
redis.call('SET', KEYS[1], 'P|' .. ARGV[3] .. '|' .. ARGV[1], 'PX', ARGV[4])
return 0
