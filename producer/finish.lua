-- A delivery reaching its end (delivered or dead), as every script records it: by a
-- worker's attempt (worker/record.lua), a poll endpoint's acknowledgement
-- (producer/poll_ack.lua), a poll endpoint's full or deleted feed (producer/feed.lua).
-- Uses forget.lua's functions.

-- A finished delivery expires after `retention` s; its event too, once none is open.
-- `retention` nil: they do not expire, because the delivery log's database is about to
-- hold the record and logdone.lua then deletes them (however long the database is down:
-- the log outbox keeps every entry until it is written).
local function finish_delivery(key, event_id, retention)
  if retention then redis.call('EXPIRE', key, retention) end
  local event_key = K.event(event_id)
  -- Read first: HINCRBY would create an event that has left Redis.
  local row = redis.call('HMGET', event_key, F.event.open, F.event.sole)
  if row[1] and redis.call('HINCRBY', event_key, F.event.open, -1) <= 0 and retention then
    redis.call('EXPIRE', event_key, retention)
    if not row[2] then redis.call('EXPIRE', K.event_deliveries(event_id), retention) end
  end
end

-- The bounded log of Redis: an endpoint's delivered deliveries beyond its latest `keep`
-- leave Redis (the dead stay for replay until their retention). `scored` is
-- {now, delivery_id, now, delivery_id, ...}: those just delivered to the endpoint, added
-- in one ZADD per thousand.
local function keep_latest(endpoint_id, scored, now, retention, keep)
  local done = K.endpoint_done(endpoint_id)
  for start = 1, #scored, 1000 do
    redis.call('ZADD', done, unpack(scored, start, math.min(start + 999, #scored)))
  end
  redis.call('ZREMRANGEBYSCORE', done, '-inf', now - retention * 1000)
  local excess = redis.call('ZCARD', done) - keep
  if excess > 0 then
    local popped = redis.call('ZPOPMIN', done, excess)
    for i = 1, #popped, 2 do
      local event_id = forget_final(popped[i], nil, false)
      if event_id then forget_event_if_done(event_id, retention, {[popped[i]] = true}) end
    end
  end
end

-- An attempt for the delivery log's database (DATABASE_URL): appended to the log outbox
-- that worker/logwriter.py writes there; `log_outbox` nil: the log is Redis's own.
local function log_attempt(log_outbox, delivery_id, created, event_id, endpoint_id, attempt)
  if log_outbox then
    redis.call('XADD', log_outbox, '*',
      F.log_entry.delivery, delivery_id, F.log_entry.created, created, F.log_entry.event,
      event_id, F.log_entry.endpoint, endpoint_id, F.log_entry.attempt, attempt)
  end
end
