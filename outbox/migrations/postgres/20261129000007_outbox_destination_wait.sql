-- When a row's destination (topic, exchange, queue) was first found missing, NULL while it is
-- not waiting for one. The relay parks such a row for up to its destination wait, counted from
-- here so that it survives relay restarts; any other outcome and a replay clear it.
ALTER TABLE waybill_outbox ADD COLUMN IF NOT EXISTS waiting_since timestamptz;
