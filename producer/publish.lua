-- Store events and their deliveries, and write the delivery jobs to the outbox,
-- all at once: a publish either happened completely or not at all. Full batches
-- become jobs; the rest waits on the ready list for a worker (see outbox.lua).
-- ARGV: prefix, now_ms, batch_size, retention_s,
--   index ('1': each endpoint's index of its deliveries, K.endpoint_deliveries, is kept,
--   which the delivery log of Redis reads; '0': the log is the database's, DATABASE_URL,
--   which has its own),
--   versions: JSON [[workspace_id, the version its endpoint list was read at], ...],
--   fifo: JSON [endpoint_id, ...], the FIFO endpoints among them (as of those versions):
--     their deliveries join the endpoint's line instead (fifo.lua),
--   events: JSON [[event_id, type, workspace_id, created_ms, [delivery_id, endpoint_id,
--     delivery_id, endpoint_id, ...]], ...],
--   then each event's body, in the same order.
-- Returns {per-event results, outbox members}; a result is the number of
-- deliveries created, or -1 when the event id was already published.
-- Returns {'stale', workspace ids} and writes nothing when a version is out of date.
local now = tonumber(ARGV[2])
local batch_size = tonumber(ARGV[3])
local retention = tonumber(ARGV[4])
local indexed = ARGV[5] == '1'

local stale = {}
for _, pair in ipairs(cjson.decode(ARGV[6])) do
  local workspace, version = pair[1], pair[2]
  if (redis.call('GET', K.workspace_version(workspace)) or '0') ~= version then
    stale[#stale + 1] = workspace
  end
end
if #stale > 0 then return {'stale', stale} end

local fifo = {}
for _, endpoint_id in ipairs(cjson.decode(ARGV[7])) do fifo[endpoint_id] = false end

local results = {}
local jobs = batch_writer(now, batch_size)
local created_total = 0

for e, event in ipairs(cjson.decode(ARGV[8])) do
  local event_id, etype, workspace, created, targets = unpack(event)
  local count = #targets / 2
  local event_key = K.event(event_id)
  if redis.call('EXISTS', event_key, K.event_seen(event_id)) > 0 then
    results[e] = -1
  else
    redis.call('HSET', event_key, F.event.body, ARGV[8 + e], F.event.type, etype,
      F.event.workspace, workspace, F.event.created, created, F.event.open, count)
    if count == 0 then redis.call('EXPIRE', event_key, retention) end
    for d = 1, #targets, 2 do
      local delivery_id, endpoint_id = targets[d], targets[d + 1]
      redis.call('HSET', K.delivery(delivery_id),
        F.delivery.event, event_id, F.delivery.endpoint, endpoint_id, F.delivery.state, 'queued',
        F.delivery.attempts, 0, F.delivery.round, 0, F.delivery.created, now)
      if indexed then
        local index = K.endpoint_deliveries(endpoint_id)
        redis.call('ZADD', index, now, delivery_id)
        redis.call('ZREMRANGEBYSCORE', index, '-inf', now - retention * 1000)
      end
      redis.call('RPUSH', K.event_deliveries(event_id), delivery_id)
      if fifo[endpoint_id] == nil then
        jobs.add(delivery_id, 1)
      else
        fifo_push(endpoint_id, delivery_id)
        fifo[endpoint_id] = true
      end
    end
    created_total = created_total + count
    results[e] = count
  end
end
jobs.ready()
for endpoint_id, joined in pairs(fifo) do
  if joined then fifo_next(endpoint_id, false) end
end
if created_total > 0 then redis.call('HINCRBY', K.stats(), 'queued', created_total) end
return {results, jobs.members}
