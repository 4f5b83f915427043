-- Replay dead deliveries that only the delivery log's database holds (their record left
-- Redis once written: worker/logdone.lua): each is created again in Redis, queued for a
-- new round numbered after its last attempt, as replay.lua does for one still in Redis;
-- its event is created again from the stored body when it left Redis too. A delivery
-- already in Redis (replayed meanwhile) is left alone, so reviving twice enqueues
-- nothing twice.
-- Routed as replay.lua routes them: a FIFO endpoint's to its line, a poll endpoint's to
-- its feed (whose overflow is logged to the database: this runs only with DATABASE_URL).
-- ARGV: prefix, now_ms, batch_size, POLL_MAX_PER_ENDPOINT, retention_s,
--   deliveries: JSON [[delivery_id, event_id, endpoint_id, created_ms, attempts_made], ...],
--   events: JSON [[event_id, type, workspace_id, created_ms], ...], then each event's
--   body, in the same order.
-- Returns {revived delivery ids, outbox members}.
local now = tonumber(ARGV[2])
local batch_size = tonumber(ARGV[3])
local poll_max, retention = tonumber(ARGV[4]), tonumber(ARGV[5])
local stored = {}
for e, event in ipairs(cjson.decode(ARGV[7])) do stored[event[1]] = {event, ARGV[7 + e]} end
local routes = {}  -- endpoint id -> 'job', 'fifo' or 'feed', read once

local revived = {}
local jobs = batch_writer(now, batch_size)
for _, d in ipairs(cjson.decode(ARGV[6])) do
  local delivery_id, event_id, endpoint_id, created, made = unpack(d)
  local key, event_key = K.delivery(delivery_id), K.event(event_id)
  local event_here = redis.call('EXISTS', event_key) == 1
  if redis.call('EXISTS', key) == 0 and (event_here or stored[event_id]) then
    if not event_here then
      local ev, body = stored[event_id][1], stored[event_id][2]
      redis.call('HSET', event_key, F.event.body, body, F.event.type, ev[2],
        F.event.workspace, ev[3], F.event.created, ev[4], F.event.open, 0)
    end
    redis.call('HINCRBY', event_key, F.event.open, 1)
    redis.call('PERSIST', event_key)
    local fan_out = K.event_deliveries(event_id)
    if not redis.call('LPOS', fan_out, delivery_id) then
      redis.call('RPUSH', fan_out, delivery_id)
    end
    redis.call('PERSIST', fan_out)
    redis.call('HSET', key, F.delivery.event, event_id, F.delivery.endpoint, endpoint_id,
      F.delivery.state, 'queued', F.delivery.attempts, made, F.delivery.round, made,
      F.delivery.created, created, F.delivery.updated, now)
    revived[#revived + 1] = delivery_id
    -- Counted first: a full feed may push it (or an older one) out as dead again.
    redis.call('HINCRBY', K.stats(), 'queued', 1)
    if routes[endpoint_id] == nil then
      local endpoint = redis.call('HMGET', K.endpoint(endpoint_id), 'ordering', 'kind')
      routes[endpoint_id] = (endpoint[2] == 'poll' and 'feed')
        or (endpoint[1] == 'fifo' and 'fifo') or 'job'
    end
    if routes[endpoint_id] == 'feed' then
      feed_push(endpoint_id, delivery_id, now, poll_max, retention, K.log_outbox())
    elseif routes[endpoint_id] == 'fifo' then
      fifo_push(endpoint_id, delivery_id)
    else
      jobs.add(delivery_id, made + 1)
    end
  end
end
jobs.flush()
for endpoint_id, route in pairs(routes) do
  if route == 'fifo' then fifo_next(endpoint_id, false) end
end
return {revived, jobs.members}
