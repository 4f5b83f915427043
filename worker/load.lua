-- Everything a batch job needs, in one round trip (see batch.lua).
-- ARGV: prefix, the delivery ids as one JSON array (cheaper to send than one argument
-- each). Returns load_batch's {deliveries, events, endpoints}.
return load_batch(cjson.decode(ARGV[2]))
