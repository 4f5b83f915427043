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

local revived = {}
local jobs = batch_writer(now, batch_size)
local queue = requeuer(jobs,
  {now = now, max = poll_max, retention = retention, log_outbox = K.log_outbox()})
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
    local sole = redis.call('HGET', event_key, F.event.sole)
    if sole and sole ~= delivery_id then
      -- A second delivery of an event of one: it keeps a list from now on.
      redis.call('RPUSH', fan_out, sole, delivery_id)
      redis.call('HDEL', event_key, F.event.sole, F.event.sole_endpoint)
    elseif not sole and not redis.call('LPOS', fan_out, delivery_id) then
      redis.call('RPUSH', fan_out, delivery_id)
    end
    redis.call('PERSIST', fan_out)
    redis.call('HSET', key, F.delivery.event, event_id, F.delivery.endpoint, endpoint_id,
      F.delivery.state, 'queued', F.delivery.attempts, made, F.delivery.round, made,
      F.delivery.created, created, F.delivery.updated, now)
    revived[#revived + 1] = delivery_id
    -- Counted first: a full feed may push it (or an older one) out as dead again.
    redis.call('HINCRBY', K.stats(), 'queued', 1)
    queue.add(endpoint_id, delivery_id, made + 1)
  end
end
queue.finish()
return {revived, jobs.members}
