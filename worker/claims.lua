-- Claims on the ready list's items (see worker/pickup.py). A worker waits for an item
-- with BLMOVE into its inbox, then takes it and up to a batch of others into a claim:
-- a list that keeps them until the worker has attempted them. Inbox and claims are
-- registered in K.claims() under the worker's id, and the worker renews K.worker(id)
-- while it lives. The claims of a worker whose key expired go back to the head of the
-- ready list for any worker: their items are attempted again, and one whose attempt
-- was recorded meanwhile is skipped as a duplicate.
-- ARGV: prefix, op, worker_id, then by op (done ids: claims whose items are all
-- attempted, dropped first):
--   take     inbox_id, claim_id, batch_size, claimed_ttl_s, done ids... -> {entries,
--            batch}: the JSON [delivery id, attempt] entries taken, and load_batch's
--            reply for them
--   renew    ttl_ms, inbox_id, done ids...   -> 'ok'
--   keep     claim_id, claimed_ttl_s, entries... -> 'ok': a claim of these entries,
--            which the worker attempts already (requests its batch left behind)
--   release  claim ids...                    -> entries given back (it could not
--            finish them)
--   retire   done ids...                     -> entries given back: all of the
--            worker's other claims (it stops); its key is deleted
--   reclaim  (worker_id unused)              -> entries given back from every worker
--            whose key expired
local op, worker = ARGV[2], ARGV[3]
local claims = K.claims()

local function drop(first)
  for k = first, #ARGV do
    redis.call('DEL', K.claimed(ARGV[k]))
    redis.call('HDEL', claims, ARGV[k])
  end
end

-- Back to the head of the ready list, in their order.
local function give_back(claim_id)
  local key = K.claimed(claim_id)
  local entries = redis.call('LRANGE', key, 0, -1)
  for j = #entries, 1, -1 do redis.call('LPUSH', K.ready(), entries[j]) end
  redis.call('DEL', key)
  redis.call('HDEL', claims, claim_id)
  return #entries
end

if op == 'take' then
  drop(8)
  local inbox, claim_id = ARGV[4], ARGV[5]
  local batch_size, ttl = tonumber(ARGV[6]), tonumber(ARGV[7])
  local entries = redis.call('LRANGE', K.claimed(inbox), 0, -1)
  redis.call('DEL', K.claimed(inbox))
  redis.call('HSET', claims, inbox, worker)
  if #entries < batch_size then
    for _, entry in ipairs(redis.call('LPOP', K.ready(), batch_size - #entries) or {}) do
      entries[#entries + 1] = entry
    end
  end
  local ids = {}
  if #entries > 0 then
    local claimed = K.claimed(claim_id)
    push_all(claimed, entries)
    redis.call('EXPIRE', claimed, ttl)
    redis.call('HSET', claims, claim_id, worker)
    for k, entry in ipairs(entries) do
      -- A malformed entry reads as a missing delivery; the worker reports it.
      local ok, item = pcall(cjson.decode, entry)
      ids[k] = ok and type(item) == 'table' and type(item[1]) == 'string' and item[1] or ''
    end
  end
  return {entries, load_batch(ids)}
elseif op == 'renew' then
  drop(6)
  redis.call('SET', K.worker(worker), 1, 'PX', tonumber(ARGV[4]))
  redis.call('HSET', claims, ARGV[5], worker)
  return 'ok'
elseif op == 'keep' then
  local claimed = K.claimed(ARGV[4])
  push_all(claimed, {unpack(ARGV, 6)})
  redis.call('EXPIRE', claimed, tonumber(ARGV[5]))
  redis.call('HSET', claims, ARGV[4], worker)
  return 'ok'
elseif op == 'release' then
  local returned = 0
  for k = 4, #ARGV do returned = returned + give_back(ARGV[k]) end
  return returned
elseif op == 'retire' or op == 'reclaim' then
  if op == 'retire' then
    drop(4)
    redis.call('DEL', K.worker(worker))
  end
  local returned = 0
  local owners = redis.call('HGETALL', claims)
  local gone = {}  -- by owner: each worker's key is looked up once, whatever its claims
  for j = 1, #owners, 2 do
    local owner = owners[j + 1]
    if op == 'reclaim' and gone[owner] == nil then
      gone[owner] = redis.call('EXISTS', K.worker(owner)) == 0
    end
    if (op == 'retire' and owner == worker) or (op == 'reclaim' and gone[owner]) then
      returned = returned + give_back(owners[j])
    end
  end
  return returned
end
return redis.error_reply('claims.lua: unknown op ' .. tostring(op))
