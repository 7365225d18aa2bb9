-- The sent log (see the PostgreSQL migration).
CREATE TABLE IF NOT EXISTS waybill_sent (
    message_id   BINARY(16)   NOT NULL,
    topic        VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    `key`        TEXT         CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
    position     VARCHAR(255) NOT NULL,
    confirmed_at DATETIME(6)  NOT NULL,
    PRIMARY KEY (message_id),
    KEY waybill_sent_confirmed (confirmed_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- When an inbox entry was finished (handled, or dead-lettered); NULL before this column.
ALTER TABLE waybill_inbox ADD COLUMN done_at DATETIME(6) NULL;
