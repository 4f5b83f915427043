-- Replay dead deliveries that only the delivery log's database holds (their record left
-- Redis once written: worker/logdone.lua): each is created again in Redis, queued for a
-- new round numbered after its last attempt, as replay.lua does for one still in Redis;
-- its event is created again from the stored body when it left Redis too. A delivery
-- already in Redis (replayed meanwhile) is left alone, so reviving twice enqueues
-- nothing twice.
-- ARGV: prefix, now_ms, batch_size,
--   deliveries: JSON [[delivery_id, event_id, endpoint_id, created_ms, attempts_made], ...],
--   events: JSON [[event_id, type, workspace_id, created_ms], ...], then each event's
--   body, in the same order.
-- Returns {revived delivery ids, outbox members}.
local now = tonumber(ARGV[2])
local batch_size = tonumber(ARGV[3])
local stored = {}
for e, event in ipairs(cjson.decode(ARGV[5])) do stored[event[1]] = {event, ARGV[5 + e]} end

local revived = {}
local jobs = batch_writer(now, batch_size)
for _, d in ipairs(cjson.decode(ARGV[4])) do
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
    jobs.add(delivery_id, made + 1)
  end
end
jobs.flush()
if #revived > 0 then redis.call('HINCRBY', K.stats(), 'queued', #revived) end
return {revived, jobs.members}
