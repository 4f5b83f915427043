-- FIFO endpoints (ordering 'fifo'): their deliveries start one at a time, in publish
-- order. A new delivery joins the endpoint's line, K.endpoint_fifo(id); only the one
-- named by K.endpoint_fifo_head(id) is enqueued (on the ready list, for any worker).
-- Its retries keep it the head, so they keep the order; when it ends, delivered or dead
-- (worker/record.lua), the next one in line is enqueued in the same script.

-- Join the endpoint's line (publish.lua, replay.lua); fifo_next enqueues it in turn.
local function fifo_push(endpoint_id, delivery_id)
  redis.call('RPUSH', K.endpoint_fifo(endpoint_id), delivery_id)
end

-- Whether a delivery has ended (or is gone): it no longer holds its endpoint's turn.
local function fifo_finished(delivery_id)
  local state = redis.call('HGET', K.delivery(delivery_id), F.delivery.state)
  return not state or state == 'delivered' or state == 'dead'
end

local function fifo_enqueue(delivery_id, attempts)
  redis.call('RPUSH', K.ready(), cjson.encode({delivery_id, tonumber(attempts or 0) + 1}))
end

-- Enqueue the endpoint's next delivery in line, unless one holds the turn: the head, if
-- it has not ended. `again`: a head that has not ended is enqueued once more (after a
-- pause, say), its attempt numbered after those made, so a job of it still pending
-- is skipped as a duplicate. Returns the delivery id enqueued, or false.
local function fifo_next(endpoint_id, again)
  local head_key = K.endpoint_fifo_head(endpoint_id)
  local head = redis.call('GET', head_key)
  if head and not fifo_finished(head) then
    if not again then return false end
    fifo_enqueue(head, redis.call('HGET', K.delivery(head), F.delivery.attempts))
    return head
  end
  local line = K.endpoint_fifo(endpoint_id)
  while true do
    local delivery_id = redis.call('LPOP', line)
    if not delivery_id then
      redis.call('DEL', head_key)
      return false
    end
    -- One that ended or left while waiting (it cannot, unless Redis lost data) is passed.
    if not fifo_finished(delivery_id) then
      redis.call('SET', head_key, delivery_id)
      fifo_enqueue(delivery_id, redis.call('HGET', K.delivery(delivery_id), F.delivery.attempts))
      return delivery_id
    end
  end
end

-- After a delivery ended: if it held its endpoint's turn, the next one goes.
local function fifo_done(endpoint_id, delivery_id)
  if redis.call('GET', K.endpoint_fifo_head(endpoint_id)) == delivery_id then
    fifo_next(endpoint_id, false)
  end
end

-- The endpoint stops being FIFO (ordering back to parallel, or deleted): every delivery
-- waiting in line is enqueued at once; the head goes on as it is. Returns how many.
local function fifo_release(endpoint_id)
  local line = K.endpoint_fifo(endpoint_id)
  local waiting = redis.call('LRANGE', line, 0, -1)
  local released = 0
  for _, delivery_id in ipairs(waiting) do
    if not fifo_finished(delivery_id) then
      fifo_enqueue(delivery_id, redis.call('HGET', K.delivery(delivery_id), F.delivery.attempts))
      released = released + 1
    end
  end
  redis.call('DEL', line, K.endpoint_fifo_head(endpoint_id))
  return released
end
