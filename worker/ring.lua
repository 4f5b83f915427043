-- Ring a bell for items left on the ready list with none on its way (the last bell
-- job was lost and its flag expired). ARGV: prefix, now_ms. Returns outbox members.
if redis.call('EXISTS', K.ready()) == 0 then return {} end
local member = ring_bell(tonumber(ARGV[2]))
if member then return {member} end
return {}
