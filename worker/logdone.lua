-- Forget log outbox entries once the delivery log's database holds them: acknowledge
-- them in the writers' group and delete them from the stream, together.
-- ARGV: prefix, group, then the entry ids. Returns how many were deleted.
local key = K.log_outbox()
local ids = {}
for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
if #ids == 0 then return 0 end
redis.call('XACK', key, ARGV[2], unpack(ids))
return redis.call('XDEL', key, unpack(ids))
