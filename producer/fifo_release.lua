-- An endpoint stops being FIFO (see fifo.lua): its waiting deliveries are enqueued.
-- ARGV: prefix, endpoint id. Returns how many were.
return fifo_release(ARGV[2])
