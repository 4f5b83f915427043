-- Store events and their deliveries, and write the delivery jobs to the outbox,
-- all at once: a publish either happened completely or not at all. Full batches
-- become jobs; the rest waits on the ready list for a worker (see outbox.lua).
-- A delivery to an endpoint that pauses (producer/pause.lua: disabled, or resuming) joins
-- its paused backlog instead of a job, at most paused_max per endpoint; one to a FIFO
-- endpoint joins its line (fifo.lua).
-- ARGV: prefix, then one JSON object (named, so that a new argument moves no other):
--   now: ms, batch_size, retention: s,
--   indexed: each endpoint's index of its deliveries, K.endpoint_deliveries, is kept,
--     which the delivery log of Redis reads (false with DATABASE_URL: the database has its own),
--   paused_max: PAUSED_MAX_PER_ENDPOINT,
--   versions: [[workspace_id, the version its endpoint list was read at], ...],
--   fifo: [endpoint_id, ...], the FIFO endpoints among them (as of those versions),
--   events: [[event_id, type, workspace_id, created_ms, [delivery_id, endpoint_id,
--     delivery_id, endpoint_id, ...]], ...],
--   poll: [endpoint_id, ...], the poll endpoints among them: their deliveries go to their
--     feeds (feed.lua), not to jobs; poll_max: POLL_MAX_PER_ENDPOINT,
-- then each event's body, in the same order.
-- Returns {per-event results, outbox members, overflowed [endpoint_id, workspace, ...]};
-- a result is the number of deliveries created, or -1 when the event id was already
-- published. Returns {'stale', workspace ids} and writes nothing when a version is out
-- of date.
local args = cjson.decode(ARGV[2])
local now, batch_size, retention = args.now, args.batch_size, args.retention
local indexed, paused_max = args.indexed, args.paused_max
local polled = {}
for _, endpoint_id in ipairs(args.poll) do polled[endpoint_id] = true end
-- A feed's overflow is logged where the log lives: the database's outbox (not indexed).
local log_outbox = nil
if not indexed then log_outbox = K.log_outbox() end

local stale = {}
for _, pair in ipairs(args.versions) do
  local workspace, version = pair[1], pair[2]
  if (redis.call('GET', K.workspace_version(workspace)) or '0') ~= version then
    stale[#stale + 1] = workspace
  end
end
if #stale > 0 then return {'stale', stale} end

local fifo = {}
for _, endpoint_id in ipairs(args.fifo) do fifo[endpoint_id] = false end
-- Event ids whose records left Redis are known by their markers (producer/markers.lua).
local window = marker_window()

local results = {}
local jobs = batch_writer(now, batch_size)
local queued_total = 0
local events = args.events
-- The publish order: one number per event of this call, after every earlier call's.
local order = redis.call('INCRBY', K.publish_sequence(), #events) - #events
local pausing, dropped, overflowed = {}, {}, {}
-- Each endpoint's index entries of this call, {now, delivery_id, ...}, written at the end.
local indexes = {}

for e, event in ipairs(events) do
  local event_id, etype, workspace, created, targets = unpack(event)
  local count = #targets / 2
  local event_key = K.event(event_id)
  if redis.call('EXISTS', event_key) == 1 or marked(event_id, window) then
    results[e] = -1
  else
    if count == 1 then
      redis.call('HSET', event_key, F.event.body, ARGV[2 + e], F.event.type, etype,
        F.event.workspace, workspace, F.event.created, created, F.event.open, 1,
        F.event.sole, targets[1], F.event.sole_endpoint, targets[2])
    else
      redis.call('HSET', event_key, F.event.body, ARGV[2 + e], F.event.type, etype,
        F.event.workspace, workspace, F.event.created, created, F.event.open, count)
      if count == 0 then redis.call('EXPIRE', event_key, retention) end
    end
    for d = 1, #targets, 2 do
      local delivery_id, endpoint_id = targets[d], targets[d + 1]
      redis.call('HSET', K.delivery(delivery_id),
        F.delivery.event, event_id, F.delivery.endpoint, endpoint_id, F.delivery.state, 'queued',
        F.delivery.attempts, 0, F.delivery.round, 0, F.delivery.created, now,
        F.delivery.order, order + e)
      if indexed then
        local scored = indexes[endpoint_id] or {}
        scored[#scored + 1] = now
        scored[#scored + 1] = delivery_id
        indexes[endpoint_id] = scored
      end
      if count > 1 then redis.call('RPUSH', K.event_deliveries(event_id), delivery_id) end
      if pausing[endpoint_id] == nil then pausing[endpoint_id] = pauses(endpoint_id) end
      if pausing[endpoint_id] then
        if pause_delivery(delivery_id, endpoint_id, nil, order + e, paused_max, now, dropped) == 1 then
          overflowed[#overflowed + 1] = endpoint_id
          overflowed[#overflowed + 1] = workspace
        end
      else
        if polled[endpoint_id] then
          feed_push(endpoint_id, delivery_id, now, args.poll_max, retention, log_outbox)
        elseif fifo[endpoint_id] == nil then
          jobs.add(delivery_id, 1)
        else
          fifo_push(endpoint_id, delivery_id)
          fifo[endpoint_id] = true
        end
        queued_total = queued_total + 1
      end
    end
    results[e] = count
  end
end
for endpoint_id, scored in pairs(indexes) do
  local index = K.endpoint_deliveries(endpoint_id)
  for start = 1, #scored, 1000 do
    redis.call('ZADD', index, unpack(scored, start, math.min(start + 999, #scored)))
  end
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now - retention * 1000)
end
jobs.ready()
for endpoint_id, joined in pairs(fifo) do
  if joined then fifo_next(endpoint_id, false) end
end
push_all(K.ready(), dropped)
if queued_total > 0 then redis.call('HINCRBY', K.stats(), 'queued', queued_total) end
return {results, jobs.members, overflowed}
