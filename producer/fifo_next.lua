-- Enqueue a FIFO endpoint's next delivery in line (see fifo.lua), for a caller that
-- lets an endpoint's deliveries go again (a resume).
-- ARGV: prefix, endpoint id, again ('1': a head that has not ended is enqueued once more).
-- Returns the delivery id enqueued, or false (nil in Python).
return fifo_next(ARGV[2], ARGV[3] == '1')
