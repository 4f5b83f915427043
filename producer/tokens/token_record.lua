-- Record one use of a webhook token in its usage history; an accepted use also counts
-- an invocation and sets "last invoked". Checked here, atomically with the count, so a
-- token deleted or disabled meanwhile is neither resurrected nor counted.
-- ARGV: prefix, token_id, user_id, counted (1/0), now_ms, entry (JSON), history cap.
-- Returns the invocation count after this use, -1 when the token is gone, -2 when it
-- is disabled and the use was to be counted (nothing recorded then).
local key = K.token(ARGV[2])
if redis.call('HGET', key, 'u') ~= ARGV[3] then return -1 end
local count
if ARGV[4] == '1' then
  if redis.call('HGET', key, 's') ~= 'active' then return -2 end
  count = redis.call('HINCRBY', key, 'i', 1)
  redis.call('HSET', key, 'l', ARGV[5])
else
  count = tonumber(redis.call('HGET', key, 'i'))
end
local history = K.token_usage(ARGV[2])
redis.call('LPUSH', history, ARGV[6])
redis.call('LTRIM', history, 0, tonumber(ARGV[7]) - 1)
return count
