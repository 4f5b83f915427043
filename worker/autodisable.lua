-- Disable endpoints that have been failing without a success for DISABLE_FAILING_AFTER
-- (worker/autodisable.py decided which); their deliveries pause from then on.
-- ARGV: prefix, now_ms, then quadruples: endpoint id, the failing-since ms it was chosen
-- for, the notification job and the operational event's job ('' for none; outbox
-- members) to write when it is disabled.
-- An endpoint no longer failing, or failing since another time, is left alone: of
-- several workers, one disables it and writes its one email and one event.
-- Returns {endpoint id, workspace id, ... of those disabled, outbox members written}.
local now = tonumber(ARGV[2])
local disabled, members = {}, {}
for k = 3, #ARGV, 4 do
  local endpoint_id, since, notify, told = ARGV[k], ARGV[k + 1], ARGV[k + 2], ARGV[k + 3]
  local key = K.endpoint(endpoint_id)
  local row = redis.call('HMGET', key, 'status', F.endpoint_pause.failing_since, 'workspace')
  if row[1] == 'failing' and row[2] == since then
    redis.call('HSET', key, 'status', 'disabled', 'updated', now, F.endpoint_pause.drop, '0')
    redis.call('SREM', K.failing(), endpoint_id)
    redis.call('INCR', K.workspace_version(row[3]))
    redis.call('ZADD', K.outbox(), now, notify)
    members[#members + 1] = notify
    if told ~= '' then
      redis.call('ZADD', K.outbox(), now, told)
      members[#members + 1] = told
    end
    disabled[#disabled + 1] = endpoint_id
    disabled[#disabled + 1] = row[3]
  end
end
return {disabled, members}
