-- Store events and their deliveries, and write the delivery jobs to the outbox,
-- all at once: a publish either happened completely or not at all. Full batches
-- become jobs; the rest waits on the ready list for a worker (see outbox.lua).
-- ARGV: prefix, now_ms, batch_size, retention_s, workspace_count, then per workspace:
--   workspace_id, the version its endpoint list was read at;
--   then event_count, then per event:
--   event_id, body, type, workspace_id, created_ms, delivery_count,
--   then delivery_count pairs of (delivery_id, endpoint_id).
-- Returns {per-event results, outbox members}; a result is the number of
-- deliveries created, or -1 when the event id was already published.
-- Returns {'stale', workspace ids} and writes nothing when a version is out of date.
local now = tonumber(ARGV[2])
local batch_size = tonumber(ARGV[3])
local retention = tonumber(ARGV[4])
local workspace_count = tonumber(ARGV[5])

local stale = {}
for w = 0, workspace_count - 1 do
  local workspace, version = ARGV[6 + 2 * w], ARGV[7 + 2 * w]
  if (redis.call('GET', K.workspace_version(workspace)) or '0') ~= version then
    stale[#stale + 1] = workspace
  end
end
if #stale > 0 then return {'stale', stale} end

local event_count = tonumber(ARGV[6 + 2 * workspace_count])
local results = {}
local jobs = batch_writer(now, batch_size)
local created_total = 0

local i = 7 + 2 * workspace_count
for e = 1, event_count do
  local event_id, body, etype, workspace = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local created, count = ARGV[i + 4], tonumber(ARGV[i + 5])
  i = i + 6
  local event_key = K.event(event_id)
  if redis.call('EXISTS', event_key) == 1 then
    results[e] = -1
    i = i + 2 * count
  else
    redis.call('HSET', event_key, 'b', body, 't', etype, 'w', workspace, 'c', created, 'o', count)
    if count == 0 then redis.call('EXPIRE', event_key, retention) end
    for _ = 1, count do
      local delivery_id, endpoint_id = ARGV[i], ARGV[i + 1]
      i = i + 2
      redis.call('HSET', K.delivery(delivery_id),
        'e', event_id, 'p', endpoint_id, 's', 'queued', 'n', 0, 'r', 0, 'c', now)
      local index = K.endpoint_deliveries(endpoint_id)
      redis.call('ZADD', index, now, delivery_id)
      redis.call('ZREMRANGEBYSCORE', index, '-inf', now - retention * 1000)
      redis.call('RPUSH', K.event_deliveries(event_id), delivery_id)
      jobs.add(delivery_id, 1)
    end
    created_total = created_total + count
    results[e] = count
  end
end
jobs.ready()
if created_total > 0 then redis.call('HINCRBY', K.stats(), 'queued', created_total) end
return {results, jobs.members}
