-- Keys a consumer group holds behind one of their dead messages (see the PostgreSQL
-- migration). The key is kept as its UTF-8 bytes so that it compares exactly, trailing spaces
-- included (utf8mb4_bin pads); the primary key fits InnoDB's 3072-byte index limit, so keys of
-- up to 2048 bytes can be held.
CREATE TABLE IF NOT EXISTS waybill_key_hold (
    group_name VARCHAR(255)    NOT NULL,
    `key`      VARBINARY(2048) NOT NULL,
    behind     BINARY(16)      NOT NULL,
    since      DATETIME(6)     NOT NULL,
    PRIMARY KEY (group_name, `key`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
