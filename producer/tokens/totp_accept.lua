-- Accept a TOTP code at most once, and lock out guessing.
-- ARGV: prefix, user_id, matched step (-1: the code matched no step), max failures,
--   lockout window (s).
-- Returns 1 accepted, 0 replayed (its step, or a later one, was already used),
-- -1 wrong code, -2 locked out (too many wrong codes in the window; even a right one
-- is refused until the window ends).
local user, step = ARGV[2], tonumber(ARGV[3])
local failures = K.user_totp_failures(user)
if tonumber(redis.call('GET', failures) or '0') >= tonumber(ARGV[4]) then return -2 end
if step < 0 then
  redis.call('INCR', failures)
  redis.call('EXPIRE', failures, ARGV[5])
  return -1
end
local key = K.user(user)
local last = tonumber(redis.call('HGET', key, 'n') or '-1')
if step <= last then return 0 end
redis.call('HSET', key, 'n', step)
redis.call('DEL', failures)
return 1
