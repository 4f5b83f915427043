-- Letting a finished delivery's record leave Redis (keep_latest in finish.lua when the
-- endpoint keeps more than LOG_KEEP_PER_ENDPOINT, logdone.lua once the log's database has it).

-- Delete a finished delivery with its index entries, if it is still the one finished
-- by attempt `number` (nil: any; a replay since would have moved it): a delivered one,
-- and with `dead_too` a dead one as well, which also leaves its endpoint's dead set and
-- the dead count (the log's database keeps it for replay: producer/revive.lua). Returns
-- its event id, or nil when nothing was deleted.
local function forget_final(delivery_id, number, dead_too)
  local key = K.delivery(delivery_id)
  local row = redis.call('HMGET', key,
    F.delivery.state, F.delivery.attempts, F.delivery.endpoint, F.delivery.event)
  local state = row[1]
  if not (state == 'delivered' or (dead_too and state == 'dead'))
    or (number and row[2] ~= number) then
    return nil
  end
  redis.call('DEL', key)
  redis.call('ZREM', K.endpoint_deliveries(row[3]), delivery_id)
  if state == 'dead' then
    redis.call('ZREM', K.endpoint_dead(row[3]), delivery_id)
    redis.call('HINCRBY', K.stats(), 'dead', -1)
  end
  return row[4]
end

-- An event's delivery ids: `sole`, its hash's F.event.sole (read by the caller with
-- its other fields), else its fan-out list.
local function fan_out_of(event_id, sole)
  if sole then return {sole} end
  return redis.call('LRANGE', K.event_deliveries(event_id), 0, -1)
end

-- Delete an event none of whose deliveries is left in Redis, with its fan-out list,
-- leaving its marker for `window` seconds (markers.lua): publishing the id again is a
-- duplicate. `gone`: the delivery ids this call deleted (nil: none), not looked up
-- again. Returns 1 when deleted.
local function forget_event_if_done(event_id, window, gone)
  local key = K.event(event_id)
  local row = redis.call('HMGET', key, F.event.open, F.event.sole)
  if tonumber(row[1] or '1') > 0 then return 0 end
  for _, delivery_id in ipairs(fan_out_of(event_id, row[2])) do
    if not (gone and gone[delivery_id]) and redis.call('EXISTS', K.delivery(delivery_id)) == 1 then
      return 0
    end
  end
  redis.call('DEL', key, K.event_deliveries(event_id))
  mark_seen(event_id, window)
  return 1
end
