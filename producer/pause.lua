-- Paused deliveries (docs/endpoint-states.md): a delivery for a disabled endpoint waits
-- in the endpoint's backlog, K.endpoint_paused(id), ordered by publish order, spending
-- no attempt; enabling re-enqueues the backlog in that order (backlog.lua, resume op).

-- Whether a new or due delivery to this endpoint joins its paused backlog: the endpoint
-- is disabled without drop, or it was enabled and its backlog is still being resumed
-- (new deliveries join the end, so the order is kept).
local function pauses(endpoint_id)
  local row = redis.call('HMGET', K.endpoint(endpoint_id), 'status', F.endpoint_pause.drop)
  if row[1] == 'disabled' then return row[2] ~= '1' end
  return row[1] ~= false and redis.call('EXISTS', K.endpoint_paused(endpoint_id)) == 1
end

-- A paused delivery, already taken out of its backlog, queued again: its next attempt
-- is the one after those it made (it keeps its remaining attempts). With `reason`, the
-- worker ends it dead with that reason instead of attempting it. Returns its ready-list
-- entry, for the caller to enqueue.
local function unpause(delivery_id, reason)
  local key = K.delivery(delivery_id)
  local made = tonumber(redis.call('HGET', key, F.delivery.attempts) or '0')
  redis.call('HSET', key, F.delivery.state, 'queued')
  if reason then
    redis.call('HSET', key, F.delivery.drop, reason)
  else
    redis.call('HDEL', key, F.delivery.drop)
  end
  redis.call('HINCRBY', K.stats(), 'paused', -1)
  redis.call('HINCRBY', K.stats(), 'queued', 1)
  return cjson.encode({delivery_id, made + 1})
end

-- Put a delivery into its endpoint's backlog at publish order `order`. `previous`: the
-- state it leaves (its count goes down), nil for a new one (not counted yet). Past `max`
-- the oldest leave the backlog to end dead ("paused backlog full"); their entries are
-- appended to `dropped`. Returns 1 when this overflowed a backlog that had not
-- overflowed since it was last resumed (the one notice), else 0.
local function pause_delivery(delivery_id, endpoint_id, previous, order, max, now, dropped)
  redis.call('HSET', K.delivery(delivery_id), F.delivery.state, 'paused', F.delivery.updated, now)
  if previous then redis.call('HINCRBY', K.stats(), previous, -1) end
  redis.call('HINCRBY', K.stats(), 'paused', 1)
  local backlog = K.endpoint_paused(endpoint_id)
  redis.call('ZADD', backlog, order, delivery_id)
  local endpoint_key = K.endpoint(endpoint_id)
  if redis.call('HGET', endpoint_key, 'status') ~= 'disabled' then
    -- Enabled meanwhile: the resuming workers must come for this one too.
    redis.call('SADD', K.resuming(), endpoint_id)
  end
  local excess = redis.call('ZCARD', backlog) - max
  if excess <= 0 then return 0 end
  local popped = redis.call('ZPOPMIN', backlog, excess)
  for i = 1, #popped, 2 do
    dropped[#dropped + 1] = unpause(popped[i], 'paused backlog full')
  end
  return redis.call('HSETNX', endpoint_key, F.endpoint_pause.backlog_full, '1')
end
