-- Per-endpoint limits shared by every worker: leases on in-flight requests, and a
-- GCRA rate limiter. A worker that dies stops renewing; its leases expire.
--
-- Fair shares: a worker may hold at most ceil(cap / workers) leases of an endpoint,
-- counting the workers that hold some or asked for some recently. A worker above its
-- share gives leases back as its requests end (it learns its share on every call).
--
-- ARGV: prefix, op, now_ms, worker_id, ttl_ms, then by op:
--   acquire  endpoint_id, cap, want        -> {granted, share, running}: running is the
--            requests the other workers had in flight for it at their last renewal
--   renew    then quadruples (endpoint_id, cap, held, running) -> shares, in order;
--            re-asserts the caller's leases (also if they had expired during a long
--            pause) and notes how many of them carry a request now
--   release  then pairs (endpoint_id, n)   -> 'ok'
--   rate     endpoint_id, interval_ms, burst_ms -> ms to wait (0: permit taken)
local op, now, worker, ttl = ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])

-- Fields: <worker> = leases held, <worker>:exp = their expiry, <worker>:run = requests
-- in flight on them, <worker>:want = expiry of a recent unmet request. Expired entries
-- are dropped as they are seen.
local function census(key)
  local fields = redis.call('HGETALL', key)
  local values = {}
  for j = 1, #fields, 2 do values[fields[j]] = fields[j + 1] end
  local in_use, mine, running = 0, 0, 0
  local workers = {[worker] = true}  -- the caller wants a share too
  for name, value in pairs(values) do
    if not string.find(name, ':', 1, true) then
      if tonumber(values[name .. ':exp'] or '0') < now then
        redis.call('HDEL', key, name, name .. ':exp', name .. ':run')
      else
        in_use = in_use + tonumber(value)
        workers[name] = true
        if name == worker then
          mine = tonumber(value)
        else
          running = running + tonumber(values[name .. ':run'] or '0')
        end
      end
    elseif string.sub(name, -5) == ':want' then
      if tonumber(value) < now then
        redis.call('HDEL', key, name)
      else
        workers[string.sub(name, 1, -6)] = true
      end
    end
  end
  local count = 0
  for _ in pairs(workers) do count = count + 1 end
  return in_use, count, mine, running
end

local function share(cap, workers) return math.max(1, math.ceil(cap / workers)) end

if op == 'acquire' then
  local key = K.endpoint_leases(ARGV[6])
  local cap, want = tonumber(ARGV[7]), tonumber(ARGV[8])
  local in_use, workers, mine, running = census(key)
  local fair = share(cap, workers)
  local grant = math.max(0, math.min(want, cap - in_use, fair - mine))
  if grant > 0 then
    redis.call('HINCRBY', key, worker, grant)
    redis.call('HSET', key, worker .. ':exp', now + ttl)
    redis.call('HDEL', key, worker .. ':want')
  else
    redis.call('HSET', key, worker .. ':want', now + 2000)  -- a recent need, not a lease
  end
  redis.call('PEXPIRE', key, ttl * 2)
  return {grant, fair, running}
elseif op == 'renew' then
  local shares = {}
  for j = 6, #ARGV, 4 do
    local key = K.endpoint_leases(ARGV[j])
    local _, workers = census(key)
    redis.call('HSET', key, worker, ARGV[j + 2], worker .. ':exp', now + ttl,
      worker .. ':run', ARGV[j + 3])
    redis.call('PEXPIRE', key, ttl * 2)
    shares[#shares + 1] = share(tonumber(ARGV[j + 1]), workers)
  end
  return shares
elseif op == 'release' then
  for j = 6, #ARGV, 2 do
    local key = K.endpoint_leases(ARGV[j])
    if redis.call('HINCRBY', key, worker, -tonumber(ARGV[j + 1])) <= 0 then
      redis.call('HDEL', key, worker, worker .. ':exp', worker .. ':run')
    end
  end
  return 'ok'
elseif op == 'rate' then
  local key = K.endpoint_rate(ARGV[6])
  local interval, burst = tonumber(ARGV[7]), tonumber(ARGV[8])
  local tat = math.max(tonumber(redis.call('GET', key) or '0'), now)
  if tat - now > burst then return tat - now - burst end
  redis.call('SET', key, tat + interval, 'PX', math.floor(tat + interval - now + burst + 1000))
  return 0
end
return redis.error_reply('unknown op ' .. tostring(op))
