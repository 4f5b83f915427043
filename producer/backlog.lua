-- Take up to `count` of an endpoint's paused deliveries, oldest publish first, and
-- queue them again at the tail of the ready list, in that order (worker/pickup.py), or
-- a FIFO endpoint's back in its line, a poll endpoint's to its feed (feed.lua).
-- ARGV: prefix, op, endpoint_id, count, then by op:
--   resume   now_ms, poll_max, retention_s, log ('1': DATABASE_URL keeps the delivery log)
--               -> {entries queued, paused left}; nothing while the endpoint is disabled
--               (the backlog stays), and the endpoint leaves K.resuming() once its
--               backlog is empty or it is disabled. A deleted endpoint's deliveries are
--               queued too: the worker ends them dead ("endpoint deleted").
--   drop     reason -> {entries queued, paused left}: queued to end dead with `reason`.
local op, endpoint_id, count = ARGV[2], ARGV[3], tonumber(ARGV[4])
local backlog = K.endpoint_paused(endpoint_id)
local reason = nil
if op == 'drop' then
  reason = ARGV[5]
elseif redis.call('HGET', K.endpoint(endpoint_id), 'status') == 'disabled' then
  redis.call('SREM', K.resuming(), endpoint_id)
  return {0, redis.call('ZCARD', backlog)}
end
-- A FIFO endpoint's resumed deliveries go back to its line (fifo.lua), not the ready
-- list: its paused head takes its turn again, those published while it was disabled
-- join the line's end (they are newer than every one waiting there), in publish order.
local in_line = not reason and redis.call('HGET', K.endpoint(endpoint_id), 'ordering') == 'fifo'
local head = in_line and redis.call('GET', K.endpoint_fifo_head(endpoint_id))
local head_resumed = false
-- A poll endpoint's resumed deliveries join the end of its feed, in publish order.
local to_feed = not reason and redis.call('HGET', K.endpoint(endpoint_id), 'kind') == 'poll'
local now, max, retention, log_outbox = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), nil
if to_feed and ARGV[8] == '1' then log_outbox = K.log_outbox() end
local entries = {}
local popped = redis.call('ZPOPMIN', backlog, count)
for i = 1, #popped, 2 do
  local entry = unpause(popped[i], reason)
  if to_feed then
    feed_push(endpoint_id, popped[i], now, max, retention, log_outbox)
  elseif not in_line then
    entries[#entries + 1] = entry
  elseif popped[i] == head then
    head_resumed = true
  else
    fifo_push(endpoint_id, popped[i])
  end
end
push_all(K.ready(), entries)
if in_line then fifo_next(endpoint_id, head_resumed) end
local left = redis.call('ZCARD', backlog)
if left == 0 then
  redis.call('SREM', K.resuming(), endpoint_id)
  redis.call('HDEL', K.endpoint(endpoint_id), F.endpoint_pause.backlog_full)
end
return {#popped / 2, left}
