-- A bell job takes its items from the ready list (see producer/outbox.lua) and reads
-- what they need, in one round trip. The items are kept under the job's claimed key
-- until the job has finished them: a re-run of the job (crash, stall) gets the same
-- items again.
-- ARGV: prefix, job_id, now_ms, batch_size, claimed_ttl_s.
-- Returns {entries, outbox members, batch}: JSON [delivery id, attempt] entries to
-- attempt, the next bell's member when more items wait, and load_batch's reply for
-- the entries (see batch.lua).
local function claimed_batch(entries)
  local ids = {}
  for k, entry in ipairs(entries) do
    -- A malformed entry reads as a missing delivery; the worker reports it as a bad job.
    local ok, item = pcall(cjson.decode, entry)
    ids[k] = ok and type(item) == 'table' and type(item[1]) == 'string' and item[1] or ''
  end
  return load_batch(ids)
end

local claimed = K.claimed(ARGV[2])
local entries = redis.call('LRANGE', claimed, 0, -1)
if #entries > 0 then return {entries, {}, claimed_batch(entries)} end
-- This bell is answered: the next publish (or the check below) rings another.
redis.call('DEL', K.bell())
entries = redis.call('LPOP', K.ready(), tonumber(ARGV[4])) or {}
if #entries > 0 then
  push_all(claimed, entries)
  redis.call('EXPIRE', claimed, tonumber(ARGV[5]))
end
local members = {}
if redis.call('EXISTS', K.ready()) == 1 then members[1] = ring_bell(tonumber(ARGV[3])) end
return {entries, members, claimed_batch(entries)}
