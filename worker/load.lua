-- Everything a batch job needs, in one round trip (see batch.lua).
-- ARGV: prefix, then delivery ids. Returns load_batch's {deliveries, events, endpoints}.
local ids = {}
for k = 2, #ARGV do ids[#ids + 1] = ARGV[k] end
return load_batch(ids)
