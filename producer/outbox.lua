-- Delivery items grouped into batch jobs, each written to the outbox as soon as
-- it is full (see producer/jobs.py for what happens to outbox members).
--
-- The doorbell: a partial batch does not get a job of its own (a bullmq job costs a
-- worker ~1.3 ms of CPU whatever it carries, so one job per single publish caps a
-- worker well below 1,000 events/s). Its items wait on the ready list, and one bell
-- job is rung for all of them: while a bell waits unclaimed (its flag is set),
-- further small publishes only push items. The worker that takes the bell claims
-- up to a batch of them (worker/claim.lua) and rings again if more are waiting, so
-- batches grow with the load and a lone event still leaves at once.

-- The flag outlives a lost bell job (failed for good) by at most this long. Longer
-- than the outbox sweep's grace plus its interval (worker/service.py): a bell whose
-- writer died before handing it to bullmq is swept before another one is rung.
local BELL_TTL_MS = 10000

-- RPUSH any number of values (unpack has a stack limit).
local function push_all(key, values)
  for start = 1, #values, 1000 do
    redis.call('RPUSH', key, unpack(values, start, math.min(start + 999, #values)))
  end
end

-- Write a due delivery job (id: prefix and a sequence number) to the outbox; returns
-- its member.
local function outbox_job(now, id_prefix, data)
  local job_id = id_prefix .. redis.call('INCR', K.sequence())
  local member = cjson.encode({q = DELIVERY_QUEUE, id = job_id, data = data, delay = 0})
  redis.call('ZADD', K.outbox(), now, member)
  return member
end

-- Write a bell job to the outbox unless one is waiting; returns its member or nil.
local function ring_bell(now)
  if not redis.call('SET', K.bell(), 1, 'NX', 'PX', BELL_TTL_MS) then return nil end
  return outbox_job(now, 'bell', {bell = 1})
end

local function batch_writer(now, batch_size)
  local writer = {members = {}}
  local items = {}
  function writer.flush()
    if #items == 0 then return end
    writer.members[#writer.members + 1] = outbox_job(now, 'b', {items = items})
    items = {}
  end
  -- The partial batch goes to the tail of the ready list (oldest first), for a bell.
  function writer.ring()
    if #items == 0 then return end
    local entries = {}
    for k, item in ipairs(items) do entries[k] = cjson.encode(item) end
    push_all(K.ready(), entries)
    items = {}
    local member = ring_bell(now)
    if member then writer.members[#writer.members + 1] = member end
  end
  function writer.add(delivery_id, attempt)
    items[#items + 1] = {delivery_id, attempt}
    if #items >= batch_size then writer.flush() end
  end
  return writer
end
