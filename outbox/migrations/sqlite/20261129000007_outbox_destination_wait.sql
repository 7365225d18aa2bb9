-- When a row's destination was first found missing (Unix ms), NULL while it is not waiting
-- for one (see the PostgreSQL migration).
ALTER TABLE waybill_outbox ADD COLUMN waiting_since_ms INTEGER;
