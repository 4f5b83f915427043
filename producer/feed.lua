-- Poll endpoints' feeds (K.endpoint_feed): a delivery to a poll endpoint is not a job;
-- it waits in its endpoint's feed, under a cursor taken from K.endpoint_feed_seq, until
-- the consumer acknowledges it (producer/poll_ack.lua). A feed holds at most `max`:
-- past it the oldest go dead, with the reason, counted in stats' poll_dropped.
-- Uses finish.lua's functions.

local POLL_FULL = 'poll backlog full: more than POLL_MAX_PER_ENDPOINT unacknowledged'

-- A queued delivery that ends dead without being sent (its feed was full, or its
-- endpoint deleted), recorded as a worker records a dead attempt. Returns 1 if it was.
local function feed_dead(delivery_id, now, retention, log_outbox, reason)
  local key = K.delivery(delivery_id)
  local row = redis.call('HMGET', key, F.delivery.state, F.delivery.attempts,
    F.delivery.event, F.delivery.endpoint, F.delivery.created)
  if row[1] ~= 'queued' then return 0 end
  local number = tonumber(row[2]) + 1
  local attempt = cjson.encode({number = number, at_ms = now, status = cjson.null,
    error = reason, latency_ms = 0, response = '', outcome = 'dead', next_attempt_ms = cjson.null})
  redis.call('HSET', key, F.delivery.attempts, number, F.delivery.attempt .. number, attempt,
    F.delivery.updated, now, F.delivery.state, 'dead')
  redis.call('HINCRBY', K.stats(), 'queued', -1)
  redis.call('HINCRBY', K.stats(), 'dead', 1)
  redis.call('ZADD', K.endpoint_dead(row[4]), now, delivery_id)
  finish_delivery(key, row[3], retention)
  log_attempt(log_outbox, delivery_id, row[5], row[3], row[4], attempt)
  return 1
end

-- Append a queued delivery to its poll endpoint's feed; the oldest go dead past `max`.
-- Returns how many did.
local function feed_push(endpoint_id, delivery_id, now, max, retention, log_outbox)
  local feed = K.endpoint_feed(endpoint_id)
  redis.call('ZADD', feed, redis.call('INCR', K.endpoint_feed_seq(endpoint_id)), delivery_id)
  redis.call('HINCRBY', K.stats(), 'polling', 1)
  local excess = redis.call('ZCARD', feed) - max
  if excess <= 0 then return 0 end
  local popped = redis.call('ZPOPMIN', feed, excess)
  local dropped = 0
  for i = 1, #popped, 2 do
    dropped = dropped + feed_dead(popped[i], now, retention, log_outbox, POLL_FULL)
  end
  redis.call('HINCRBY', K.stats(), 'polling', -(#popped / 2))
  redis.call('HINCRBY', K.stats(), 'poll_dropped', dropped)
  return dropped
end

-- Queueing again deliveries that had left the queues (replay.lua, revive.lua): each goes
-- where its endpoint takes new ones, a poll endpoint's feed, a FIFO endpoint's line, else
-- a job of `jobs` (batch_writer). `feed`: {now, max, retention, log_outbox} for feed_push.
-- Call finish() once all are added.
local function requeuer(jobs, feed)
  local routes = {}  -- endpoint id -> 'feed', 'fifo' or 'job', each endpoint read once
  local self = {}
  function self.add(endpoint_id, delivery_id, attempt)
    if routes[endpoint_id] == nil then
      local endpoint = redis.call('HMGET', K.endpoint(endpoint_id), 'ordering', 'kind')
      routes[endpoint_id] = (endpoint[2] == 'poll' and 'feed')
        or (endpoint[1] == 'fifo' and 'fifo') or 'job'
    end
    local route = routes[endpoint_id]
    if route == 'feed' then
      feed_push(endpoint_id, delivery_id, feed.now, feed.max, feed.retention, feed.log_outbox)
    elseif route == 'fifo' then
      fifo_push(endpoint_id, delivery_id)
    else
      jobs.add(delivery_id, attempt)
    end
  end
  function self.finish()
    jobs.flush()
    for endpoint_id, route in pairs(routes) do
      if route == 'fifo' then fifo_next(endpoint_id, false) end
    end
  end
  return self
end
