-- Delivery items grouped into batch jobs, each written to the outbox as soon as
-- it is full (see producer/jobs.py for what happens to outbox members).
--
-- A partial batch does not get a job of its own: a bullmq job costs publisher and
-- worker together ~0.5 ms of CPU whatever it carries, more than sending one event.
-- Its items go to the ready list, where every worker waits for them (a blocking
-- BLMOVE, worker/pickup.py) and takes up to a batch at once, so batches grow with the
-- load and a lone event still leaves at once.

-- RPUSH any number of values (unpack has a stack limit).
local function push_all(key, values)
  for start = 1, #values, 1000 do
    redis.call('RPUSH', key, unpack(values, start, math.min(start + 999, #values)))
  end
end

local function batch_writer(now, batch_size)
  local writer = {members = {}}
  local items = {}
  function writer.flush()
    if #items == 0 then return end
    local job_id = 'b' .. redis.call('INCR', K.sequence())
    local member = cjson.encode({q = DELIVERY_QUEUE, id = job_id, data = {items = items}, delay = 0})
    redis.call('ZADD', K.outbox(), now, member)
    writer.members[#writer.members + 1] = member
    items = {}
  end
  -- The partial batch goes to the tail of the ready list (oldest first), for a worker.
  function writer.ready()
    if #items == 0 then return end
    local entries = {}
    for k, item in ipairs(items) do entries[k] = cjson.encode(item) end
    push_all(K.ready(), entries)
    items = {}
  end
  function writer.add(delivery_id, attempt)
    items[#items + 1] = {delivery_id, attempt}
    if #items >= batch_size then writer.flush() end
  end
  return writer
end
