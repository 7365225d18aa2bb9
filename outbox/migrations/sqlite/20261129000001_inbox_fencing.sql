-- Fencing tokens on inbox claims, and a dead-lettered state (see the PostgreSQL migration).
ALTER TABLE waybill_inbox ADD COLUMN token BLOB;
ALTER TABLE waybill_inbox ADD COLUMN dead INTEGER NOT NULL DEFAULT 0;
