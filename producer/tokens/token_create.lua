-- Create a webhook token unless its user already holds the maximum: the count and the
-- creation are one step, so concurrent creations can never exceed it.
-- ARGV: prefix, user_id, token_id, name, secret digest, now_ms, max tokens.
-- Returns 1 created, 0 the user is at the maximum.
local user, token_id, now = ARGV[2], ARGV[3], ARGV[6]
local tokens = K.user_tokens(user)
if redis.call('ZCARD', tokens) >= tonumber(ARGV[7]) then return 0 end
redis.call('HSET', K.token(token_id),
  'u', user, 'm', ARGV[4], 's', 'active', 'h', ARGV[5], 'c', now, 'i', 0, 'l', 0)
redis.call('ZADD', tokens, now, token_id)
return 1
