-- Delivery items grouped into batch jobs, each written to the outbox as soon as
-- it is full (see producer/jobs.py for what happens to outbox members).
local function batch_writer(now, batch_size)
  local writer = {members = {}}
  local items = {}
  function writer.flush()
    if #items == 0 then return end
    local job_id = 'b' .. redis.call('INCR', K.sequence())
    local member = cjson.encode({q = 'deliveries', id = job_id, data = {items = items}, delay = 0})
    redis.call('ZADD', K.outbox(), now, member)
    writer.members[#writer.members + 1] = member
    items = {}
  end
  function writer.add(delivery_id, attempt)
    items[#items + 1] = {delivery_id, attempt}
    if #items >= batch_size then writer.flush() end
  end
  return writer
end
