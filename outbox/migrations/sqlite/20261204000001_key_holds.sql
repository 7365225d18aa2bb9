-- Keys a consumer group holds behind one of their dead messages (see the PostgreSQL
-- migration). `since` is Unix milliseconds.
CREATE TABLE IF NOT EXISTS waybill_key_hold (
    group_name TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    behind     BLOB    NOT NULL,
    since      INTEGER NOT NULL,
    PRIMARY KEY (group_name, key)
);
