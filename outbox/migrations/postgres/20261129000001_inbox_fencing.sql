-- Fencing tokens on inbox claims, and a dead-lettered state.
-- Every claim stores a new token; completing, renewing and releasing act only for the current
-- token, so a holder whose lease lapsed and was taken over cannot record a second effect.
-- `dead` marks a message that went to the dead letter: later copies are skipped until a replay
-- reopens it.
ALTER TABLE waybill_inbox ADD COLUMN IF NOT EXISTS token uuid;
ALTER TABLE waybill_inbox ADD COLUMN IF NOT EXISTS dead boolean NOT NULL DEFAULT false;
