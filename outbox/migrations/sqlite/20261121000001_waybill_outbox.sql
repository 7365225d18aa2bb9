-- The transactional outbox on SQLite. Times are Unix milliseconds.
-- SQLite has one writer at a time, so seq order is commit order: no transaction-id guard needed.
CREATE TABLE IF NOT EXISTS waybill_outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id      BLOB    NOT NULL UNIQUE,
    topic           TEXT    NOT NULL,
    key             TEXT,
    -- Stable hash of the key (of the id for unkeyed rows); shard = shard_hash % shard count.
    shard_hash      INTEGER NOT NULL,
    payload         BLOB    NOT NULL,
    headers         TEXT    NOT NULL DEFAULT '{}',
    created_at_ms   INTEGER NOT NULL,
    enqueued_at_ms  INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    available_at_ms INTEGER NOT NULL,
    dead            INTEGER NOT NULL DEFAULT 0,
    dead_at_ms      INTEGER
);

CREATE INDEX IF NOT EXISTS waybill_outbox_key ON waybill_outbox (key, seq) WHERE dead = 0;

-- Shard leases: each relay publishes only the shards it holds an unexpired lease on.
CREATE TABLE IF NOT EXISTS waybill_shard_lease (
    shard         INTEGER PRIMARY KEY,
    owner         TEXT    NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    shard_count   INTEGER NOT NULL
);

-- Live relays (renewed with their leases): the fair share of shards is counted over these.
CREATE TABLE IF NOT EXISTS waybill_relay (
    name          TEXT    PRIMARY KEY,
    expires_at_ms INTEGER NOT NULL
);

-- The inbox: which messages each consumer group has handled (the SQL idempotency store).
CREATE TABLE IF NOT EXISTS waybill_inbox (
    group_name    TEXT    NOT NULL,
    message_id    BLOB    NOT NULL,
    done          INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    PRIMARY KEY (group_name, message_id)
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS waybill_inbox_expiry ON waybill_inbox (expires_at_ms);
