-- Keys a consumer group holds behind one of their dead messages (DeadLetterMode::HoldKey):
-- later messages of the key are dead-lettered unhandled until that message is replayed and
-- handled (its success deletes the row) or an operator releases the key.
CREATE TABLE IF NOT EXISTS waybill_key_hold (
    group_name text        NOT NULL,
    key        text        NOT NULL,
    behind     uuid        NOT NULL,
    since      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_name, key)
);
