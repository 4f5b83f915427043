-- Per-endpoint limits shared by every worker: leases on in-flight requests, and a
-- GCRA rate limiter. A worker that dies stops renewing; its leases expire.
-- ARGV: prefix, op, now_ms, worker_id, then by op:
--   acquire  endpoint_id, cap, want, ttl_ms      -> leases granted (0..want)
--   release  ttl_ms, then pairs (endpoint_id, n) -> 'ok'
--   renew    ttl_ms, then endpoint ids           -> 'ok'
--   rate     endpoint_id, interval_ms, burst_ms  -> ms to wait (0: permit taken)
local op, now, worker = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local expiry_field = worker .. ':exp'

local function live_in_use(key)
  local fields = redis.call('HGETALL', key)
  local counts, in_use = {}, 0
  for j = 1, #fields, 2 do
    local name, value = fields[j], fields[j + 1]
    if string.sub(name, -4) ~= ':exp' then counts[name] = tonumber(value) end
  end
  for name, count in pairs(counts) do
    local exp = tonumber(redis.call('HGET', key, name .. ':exp') or '0')
    if exp < now then
      redis.call('HDEL', key, name, name .. ':exp')
    else
      in_use = in_use + count
    end
  end
  return in_use
end

if op == 'acquire' then
  local key = K.endpoint_leases(ARGV[5])
  local cap, want, ttl = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
  local grant = math.min(want, cap - live_in_use(key))
  if grant <= 0 then return 0 end
  redis.call('HINCRBY', key, worker, grant)
  redis.call('HSET', key, expiry_field, now + ttl)
  redis.call('PEXPIRE', key, ttl * 2)
  return grant
elseif op == 'release' then
  for j = 6, #ARGV, 2 do
    local key = K.endpoint_leases(ARGV[j])
    if redis.call('HINCRBY', key, worker, -tonumber(ARGV[j + 1])) <= 0 then
      redis.call('HDEL', key, worker, expiry_field)
    end
  end
  return 'ok'
elseif op == 'renew' then
  local ttl = tonumber(ARGV[5])
  for j = 6, #ARGV do
    local key = K.endpoint_leases(ARGV[j])
    if redis.call('HEXISTS', key, worker) == 1 then
      redis.call('HSET', key, expiry_field, now + ttl)
      redis.call('PEXPIRE', key, ttl * 2)
    end
  end
  return 'ok'
elseif op == 'rate' then
  local key = K.endpoint_rate(ARGV[5])
  local interval, burst = tonumber(ARGV[6]), tonumber(ARGV[7])
  local tat = math.max(tonumber(redis.call('GET', key) or '0'), now)
  if tat - now > burst then return tat - now - burst end
  redis.call('SET', key, tat + interval, 'PX', math.floor(tat + interval - now + burst + 1000))
  return 0
end
return redis.error_reply('unknown op ' .. tostring(op))
