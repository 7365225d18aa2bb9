-- Earlier dead rows of a key, for the relay's key-holding mode (the live rows have
-- waybill_outbox_key).
CREATE INDEX IF NOT EXISTS waybill_outbox_dead_key ON waybill_outbox (key, seq) WHERE dead = 1;
