-- Store events and their deliveries, and write the delivery jobs to the outbox,
-- all at once: a publish either happened completely or not at all. Full batches
-- become jobs; the rest waits on the ready list for a worker (see outbox.lua).
-- ARGV: prefix, now_ms, batch_size, retention_s,
--   versions: JSON [[workspace_id, the version its endpoint list was read at], ...],
--   events: JSON [[event_id, type, workspace_id, created_ms, [delivery_id, endpoint_id,
--     delivery_id, endpoint_id, ...]], ...],
--   poll: JSON [[ids of the poll endpoints among them], POLL_MAX_PER_ENDPOINT, log ('1':
--     DATABASE_URL keeps the delivery log, see worker/record.lua)]: their deliveries go
--     to their feeds (feed.lua), not to jobs,
--   then each event's body, in the same order.
-- Returns {per-event results, outbox members}; a result is the number of
-- deliveries created, or -1 when the event id was already published.
-- Returns {'stale', workspace ids} and writes nothing when a version is out of date.
local now = tonumber(ARGV[2])
local batch_size = tonumber(ARGV[3])
local retention = tonumber(ARGV[4])
local poll_ids, poll_max, poll_log = unpack(cjson.decode(ARGV[7]))
local polled = {}
for _, endpoint_id in ipairs(poll_ids) do polled[endpoint_id] = true end
local log_outbox = nil
if poll_log == '1' then log_outbox = K.log_outbox() end

local stale = {}
for _, pair in ipairs(cjson.decode(ARGV[5])) do
  local workspace, version = pair[1], pair[2]
  if (redis.call('GET', K.workspace_version(workspace)) or '0') ~= version then
    stale[#stale + 1] = workspace
  end
end
if #stale > 0 then return {'stale', stale} end

local results = {}
local jobs = batch_writer(now, batch_size)
local created_total = 0

for e, event in ipairs(cjson.decode(ARGV[6])) do
  local event_id, etype, workspace, created, targets = unpack(event)
  local count = #targets / 2
  local event_key = K.event(event_id)
  if redis.call('EXISTS', event_key, K.event_seen(event_id)) > 0 then
    results[e] = -1
  else
    redis.call('HSET', event_key, F.event.body, ARGV[7 + e], F.event.type, etype,
      F.event.workspace, workspace, F.event.created, created, F.event.open, count)
    if count == 0 then redis.call('EXPIRE', event_key, retention) end
    for d = 1, #targets, 2 do
      local delivery_id, endpoint_id = targets[d], targets[d + 1]
      redis.call('HSET', K.delivery(delivery_id),
        F.delivery.event, event_id, F.delivery.endpoint, endpoint_id, F.delivery.state, 'queued',
        F.delivery.attempts, 0, F.delivery.round, 0, F.delivery.created, now)
      local index = K.endpoint_deliveries(endpoint_id)
      redis.call('ZADD', index, now, delivery_id)
      redis.call('ZREMRANGEBYSCORE', index, '-inf', now - retention * 1000)
      redis.call('RPUSH', K.event_deliveries(event_id), delivery_id)
      if polled[endpoint_id] then
        feed_push(endpoint_id, delivery_id, now, poll_max, retention, log_outbox)
      else
        jobs.add(delivery_id, 1)
      end
    end
    created_total = created_total + count
    results[e] = count
  end
end
jobs.ready()
if created_total > 0 then redis.call('HINCRBY', K.stats(), 'queued', created_total) end
return {results, jobs.members}
