-- Everything a batch of deliveries needs, read at once (load.lua, claims.lua).
-- Returns {deliveries, events, endpoints} for the delivery ids in `ids`:
--   deliveries[k] = {state, attempts made, round base, event id, endpoint id, why a
--                    paused one ends dead (F.delivery.drop, or false)}, or 0 if gone
--   events        = flat {id, body, type, created_ms, ...}, each distinct event once
--   endpoints     = {{id, HGETALL...}, ...}, each distinct endpoint once (deleted: just {id})
local function load_batch(ids)
  local deliveries, events, endpoints = {}, {}, {}
  local seen_events, seen_endpoints = {}, {}
  for _, delivery_id in ipairs(ids) do
    local row = redis.call('HMGET', K.delivery(delivery_id), F.delivery.state,
      F.delivery.attempts, F.delivery.round, F.delivery.event, F.delivery.endpoint,
      F.delivery.drop)
    if row[1] then
      deliveries[#deliveries + 1] = row
      local event_id, endpoint_id = row[4], row[5]
      if not seen_events[event_id] then
        seen_events[event_id] = true
        local ev = redis.call('HMGET', K.event(event_id),
          F.event.body, F.event.type, F.event.created)
        if ev[1] then
          for _, value in ipairs({event_id, ev[1], ev[2], ev[3]}) do events[#events + 1] = value end
        end
      end
      if not seen_endpoints[endpoint_id] then
        seen_endpoints[endpoint_id] = true
        local fields = redis.call('HGETALL', K.endpoint(endpoint_id))
        table.insert(fields, 1, endpoint_id)
        endpoints[#endpoints + 1] = fields
      end
    else
      deliveries[#deliveries + 1] = 0
    end
  end
  return {deliveries, events, endpoints}
end
