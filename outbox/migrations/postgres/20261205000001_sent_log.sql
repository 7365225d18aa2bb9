-- The sent log: what the relay had confirmed by the broker, kept for the relay's sent-log
-- retention (off unless configured) so that `waybill audit` can compare it with the inbox.
CREATE TABLE IF NOT EXISTS waybill_sent (
    message_id   uuid        PRIMARY KEY,
    topic        text        NOT NULL,
    key          text,
    -- Where the broker stored it (partition/offset, queue/offset, or the confirm's tag).
    position     text        NOT NULL,
    confirmed_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS waybill_sent_confirmed ON waybill_sent (confirmed_at);

-- When an inbox entry was finished (handled, or dead-lettered); NULL for entries finished
-- before this column existed and for claims still in flight.
ALTER TABLE waybill_inbox ADD COLUMN IF NOT EXISTS done_at timestamptz;
