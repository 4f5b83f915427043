-- Letting a finished delivery's record leave Redis (keep_latest in finish.lua when the
-- endpoint keeps more than LOG_KEEP_PER_ENDPOINT, logdone.lua once the log's database has it).

-- Delete a delivered delivery with its index entries, if it is still the one delivered
-- by attempt `number` (nil: any; a replay since would have moved it). Returns its event
-- id, or nil when nothing was deleted.
local function forget_delivered(delivery_id, number)
  local key = K.delivery(delivery_id)
  local row = redis.call('HMGET', key,
    F.delivery.state, F.delivery.attempts, F.delivery.endpoint, F.delivery.event)
  if row[1] ~= 'delivered' or (number and row[2] ~= number) then return nil end
  redis.call('DEL', key)
  redis.call('ZREM', K.endpoint_deliveries(row[3]), delivery_id)
  redis.call('ZREM', K.endpoint_done(row[3]), delivery_id)
  return row[4]
end

-- Delete an event none of whose deliveries is left in Redis, with its fan-out list,
-- leaving K.event_seen(id) for `ttl` seconds: publishing the id again is a duplicate.
-- Returns 1 when deleted.
local function forget_event_if_done(event_id, ttl)
  local key = K.event(event_id)
  if redis.call('EXISTS', key) == 0 or tonumber(redis.call('HGET', key, F.event.open) or '0') > 0 then
    return 0
  end
  local fan_out = K.event_deliveries(event_id)
  for _, delivery_id in ipairs(redis.call('LRANGE', fan_out, 0, -1)) do
    if redis.call('EXISTS', K.delivery(delivery_id)) == 1 then return 0 end
  end
  redis.call('DEL', key, fan_out)
  redis.call('SET', K.event_seen(event_id), 1, 'EX', ttl)
  return 1
end
