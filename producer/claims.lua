-- Claims of event ids by workspace (K.event_claim), PARTITIONS > 1 only: this script runs
-- in the partition of the ids' own hash (producer/claims.py), before their events are
-- published in their workspaces' partitions.
-- ARGV: prefix, window (s), then pairs (event id, workspace tag). Returns, per pair, 1 if
-- the id is its workspace's (claimed now, or by the same workspace within the window),
-- 0 if another workspace's.
local window = tonumber(ARGV[2])
local bucket = math.floor(tonumber(redis.call('TIME')[1]) / window)
local results = {}
for i = 3, #ARGV, 2 do
  local digest = redis.sha1hex(ARGV[i])
  local shard = string.sub(digest, 1, CLAIM_SHARD_HEX)
  local field = string.sub(digest, CLAIM_SHARD_HEX + 1, CLAIM_SHARD_HEX + 16)
  local tag = ARGV[i + 1]
  -- The bucket before now's still holds the claims of the last window or so.
  local held = redis.call('HGET', K.event_claim(window .. ':' .. (bucket - 1) .. ':' .. shard), field)
  if not held then
    local key = K.event_claim(window .. ':' .. bucket .. ':' .. shard)
    if redis.call('HSETNX', key, field, tag) == 1 then
      redis.call('EXPIREAT', key, (bucket + 2) * window, 'NX')
      held = tag
    else
      held = redis.call('HGET', key, field)
    end
  end
  results[#results + 1] = (held == tag) and 1 or 0
end
return results
