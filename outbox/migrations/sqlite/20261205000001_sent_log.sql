-- The sent log (see the PostgreSQL migration); times in Unix milliseconds.
CREATE TABLE IF NOT EXISTS waybill_sent (
    message_id      BLOB    PRIMARY KEY,
    topic           TEXT    NOT NULL,
    key             TEXT,
    position        TEXT    NOT NULL,
    confirmed_at_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS waybill_sent_confirmed ON waybill_sent (confirmed_at_ms);

-- When an inbox entry was finished (handled, or dead-lettered), Unix milliseconds.
ALTER TABLE waybill_inbox ADD COLUMN done_at_ms INTEGER;
