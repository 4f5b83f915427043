-- The events whose first attempts the log writer is about to write (worker/logwriter.py),
-- with their fan-out, in one call: a pipeline of three commands per event cost the
-- worker more CPU to pack and parse than the write itself.
-- ARGV: prefix, then event ids. Returns, per id in that order, {} when the event has
-- left Redis, else {body, type, workspace, created, {delivery id, endpoint id, ...}}
-- (deliveries no longer in Redis left out).
local found = {}
for i = 2, #ARGV do
  local event_id = ARGV[i]
  local row = redis.call('HMGET', K.event(event_id),
    F.event.body, F.event.type, F.event.workspace, F.event.created, F.event.sole,
    F.event.sole_endpoint)
  if row[1] and row[5] then
    -- An event of one delivery: the event is deleted with it, so it is still here.
    found[#found + 1] = {row[1], row[2], row[3], row[4], {row[5], row[6]}}
  elseif row[1] then
    local fan_out = {}
    for _, delivery_id in ipairs(redis.call('LRANGE', K.event_deliveries(event_id), 0, -1)) do
      local endpoint_id = redis.call('HGET', K.delivery(delivery_id), F.delivery.endpoint)
      if endpoint_id then
        fan_out[#fan_out + 1] = delivery_id
        fan_out[#fan_out + 1] = endpoint_id
      end
    end
    found[#found + 1] = {row[1], row[2], row[3], row[4], fan_out}
  else
    found[#found + 1] = {}
  end
end
return found
