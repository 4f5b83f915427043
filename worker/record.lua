-- Record attempt outcomes, move deliveries and endpoints to their next state,
-- and write the jobs those changes cause to the outbox: all at once.
-- ARGV: prefix, now_ms, retention_s, outcomes (one JSON array: a few hundred separate
-- arguments cost the worker more to pack than the script costs to run), log ('1': each
-- recorded attempt is also appended to K.log_outbox() for the delivery log's database,
-- see worker/logwriter.py; '0': the log is Redis's own, and each endpoint keeps its latest
-- `keep` delivered deliveries, the older leaving Redis: producer/finish.lua), keep, where each
-- outcome is [delivery_id, attempt_number, kind ('delivered' | 'retry' | 'dead'),
--   attempt_json, due_ms (retry, else ''), notify_member (dead, else ''),
--   disable (1: the receiver answered 410 Gone, disable the endpoint, else 0),
--   ops_dead (the delivery.dead operational job's member, written if it ends dead, or ''),
--   ops_turn (the member of the endpoint's operational event, written only if this
--     outcome turns it failing, disabled or active again, or '')],
-- then (after log) any number of retry job members, written to the outbox as they are.
-- A delivery that ends lets the next one of its FIFO endpoint go (fifo.lua).
-- Returns {per-outcome codes, outbox members written}. Codes:
--   'dup'       this attempt was already recorded (a re-run job): nothing changed
--   'gone'      the delivery no longer exists
--   'delivered' / 'retry' / 'dead'
--   'recovered' delivered, and the endpoint went from failing back to active
--   'failing'   dead, and the endpoint went from active to failing (email queued)
--   'disabled'  dead with 410 Gone: the endpoint was disabled (email queued)
-- (the operational jobs go with 'dead', 'failing', 'disabled' and 'recovered').
local now = tonumber(ARGV[2])
local retention = tonumber(ARGV[3])
local outcomes = cjson.decode(ARGV[4])
local log_outbox = nil
-- How long a finished record stays (finish.lua): nil when the database's writer deletes it.
local expiry = retention
if ARGV[5] == '1' then log_outbox, expiry = K.log_outbox(), nil end
local keep = tonumber(ARGV[6])
local outbox, stats = K.outbox(), K.stats()
local codes, members = {}, {}
-- Per call rather than per outcome: the stats' changes, each endpoint's status and
-- whether it has a FIFO line (read once), the delivered to keep in Redis's log.
local counts, statuses, no_fifo, delivered_by = {}, {}, {}, {}

local function count(field, by) counts[field] = (counts[field] or 0) + by end

local function status_of(endpoint_key)
  if statuses[endpoint_key] == nil then
    statuses[endpoint_key] = redis.call('HGET', endpoint_key, 'status')
  end
  return statuses[endpoint_key]
end

-- No head now means none within this call: only fifo_done's fifo_next sets a head,
-- and only for an endpoint that has one.
local function finished_in_line(endpoint_id, delivery_id)
  if no_fifo[endpoint_id] then return end
  if redis.call('EXISTS', K.endpoint_fifo_head(endpoint_id)) == 0 then
    no_fifo[endpoint_id] = true
  else
    fifo_done(endpoint_id, delivery_id)
  end
end

-- A status change, as producer/endpoints.py writes one: it bumps the workspace's
-- version, so publishers stop using their cached copy of its endpoints.
local function set_status(endpoint_key, status)
  redis.call('HSET', endpoint_key, 'status', status, 'updated', now)
  statuses[endpoint_key] = status
  redis.call('INCR', K.workspace_version(redis.call('HGET', endpoint_key, 'workspace')))
end

-- Write a job (an outbox member, '' for none) to the outbox with the change it reports.
local function enqueue(member)
  if member ~= '' then
    redis.call('ZADD', outbox, now, member)
    members[#members + 1] = member
  end
end

for k, outcome in ipairs(outcomes) do
  local delivery_id, number, kind, attempt, due, notify, disable, ops_dead, ops_turn =
    unpack(outcome)
  local key = K.delivery(delivery_id)
  local row = redis.call('HMGET', key, F.delivery.state, F.delivery.attempts,
    F.delivery.event, F.delivery.endpoint, F.delivery.created)
  if not row[1] then
    codes[k] = 'gone'
  elseif tonumber(row[2]) >= number or row[1] == 'delivered' or row[1] == 'dead' then
    codes[k] = 'dup'
  else
    local previous, event_id, endpoint_id = row[1], row[3], row[4]
    local endpoint_key = K.endpoint(endpoint_id)
    local state = kind
    if kind == 'retry' then state = 'scheduled' end
    redis.call('HSET', key, F.delivery.attempts, number, F.delivery.attempt .. number, attempt,
      F.delivery.updated, now, F.delivery.state, state)
    count(previous, -1)
    -- Paused by a second copy of its item while this attempt was under way: it leaves
    -- the backlog, or a resume would send it again.
    if previous == 'paused' then redis.call('ZREM', K.endpoint_paused(endpoint_id), delivery_id) end
    codes[k] = kind
    log_attempt(log_outbox, delivery_id, row[5], event_id, endpoint_id, attempt)
    if kind == 'retry' then
      redis.call('HSET', key, F.delivery.due, due)
      count('scheduled', 1)
    elseif kind == 'delivered' then
      finish_delivery(key, event_id, expiry)
      finished_in_line(endpoint_id, delivery_id)
      count('delivered', 1)
      if not log_outbox then
        local scored = delivered_by[endpoint_id] or {}
        scored[#scored + 1] = now
        scored[#scored + 1] = delivery_id
        delivered_by[endpoint_id] = scored
      end
      if status_of(endpoint_key) == 'failing' then
        set_status(endpoint_key, 'active')
        redis.call('SREM', K.failing(), endpoint_id)
        enqueue(ops_turn)
        codes[k] = 'recovered'
      end
    else
      finish_delivery(key, event_id, expiry)
      finished_in_line(endpoint_id, delivery_id)
      count('dead', 1)
      redis.call('ZADD', K.endpoint_dead(endpoint_id), now, delivery_id)
      enqueue(ops_dead)
      local status = status_of(endpoint_key)
      if disable == 1 and (status == 'active' or status == 'failing') then
        set_status(endpoint_key, 'disabled')
        redis.call('SREM', K.failing(), endpoint_id)
        enqueue(notify)
        enqueue(ops_turn)
        codes[k] = 'disabled'
      elseif disable ~= 1 and status == 'active' then
        set_status(endpoint_key, 'failing')
        -- Since when it fails without a success (DISABLE_FAILING_AFTER, autodisable.lua).
        redis.call('HSET', endpoint_key, F.endpoint_pause.failing_since, now)
        redis.call('SADD', K.failing(), endpoint_id)
        enqueue(notify)
        enqueue(ops_turn)
        codes[k] = 'failing'
      end
    end
  end
end
for field, by in pairs(counts) do
  if by ~= 0 then redis.call('HINCRBY', stats, field, by) end
end
for endpoint_id, scored in pairs(delivered_by) do
  keep_latest(endpoint_id, scored, now, retention, keep)
end
for m = 7, #ARGV do
  redis.call('ZADD', outbox, now, ARGV[m])
  members[#members + 1] = ARGV[m]
end
count_marks()
return {codes, members}
