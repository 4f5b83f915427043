-- Pause the due items of disabled endpoints (worker/pauses.py): each delivery joins its
-- endpoint's paused backlog at its publish order, spending no attempt.
-- ARGV: prefix, now_ms, paused_max, items as JSON [[delivery_id, attempt], ...].
-- An item already recorded, or whose delivery is gone, paused or finished, is skipped; one
-- whose endpoint no longer pauses (enabled meanwhile) goes back to the ready list as it is.
-- Returns {paused count, {endpoint id, workspace id, ...} of backlogs that overflowed
-- (first time since resumed)}.
local now, paused_max = tonumber(ARGV[2]), tonumber(ARGV[3])
local paused, again, dropped, overflowed = 0, {}, {}, {}
for _, item in ipairs(cjson.decode(ARGV[4])) do
  local delivery_id, attempt = item[1], item[2]
  local row = redis.call('HMGET', K.delivery(delivery_id), F.delivery.state,
    F.delivery.attempts, F.delivery.endpoint, F.delivery.order)
  local state = row[1]
  if state and state ~= 'delivered' and state ~= 'dead' and state ~= 'paused'
      and tonumber(row[2]) < attempt then
    local endpoint_id = row[3]
    if pauses(endpoint_id) then
      if pause_delivery(delivery_id, endpoint_id, state, tonumber(row[4] or '0'), paused_max,
          now, dropped) == 1 then
        overflowed[#overflowed + 1] = endpoint_id
        overflowed[#overflowed + 1] = redis.call('HGET', K.endpoint(endpoint_id), 'workspace')
      end
      paused = paused + 1
    else
      again[#again + 1] = cjson.encode(item)
    end
  end
end
push_all(K.ready(), again)
push_all(K.ready(), dropped)
return {paused, overflowed}
