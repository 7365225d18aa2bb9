-- The transactional outbox on MySQL 8.0+ and MariaDB 10.6+ (InnoDB).
--
-- Times the server sets are DATETIME(6) in UTC, always written and compared through
-- UTC_TIMESTAMP(6): no session time zone or daylight-saving change moves them, and they keep
-- microseconds. Message and token ids are BINARY(16): what sqlx writes for a uuid::Uuid, 16
-- bytes instead of 36 characters in every index entry, and with time-ordered (v7) message
-- ids new rows land at the end of the unique index. Topics, keys, owners and group names
-- compare byte for byte (utf8mb4_bin): "Orders" and "orders" are two topics, "K" and "k" two
-- keys, "G" and "g" two consumer groups with inboxes of their own, as on PostgreSQL and
-- SQLite (the default collations ignore case and trailing spaces).
CREATE TABLE IF NOT EXISTS waybill_outbox (
    seq           BIGINT       NOT NULL AUTO_INCREMENT,
    message_id    BINARY(16)   NOT NULL,
    topic         VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    `key`         TEXT         CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
    -- Stable hash of the key (of the id for unkeyed rows); shard = shard_hash % shard count.
    shard_hash    BIGINT       NOT NULL,
    payload       LONGBLOB     NOT NULL,
    headers       JSON         NOT NULL,
    -- The message's own creation time (Unix milliseconds, its producer's clock).
    created_at_ms BIGINT       NOT NULL,
    enqueued_at   DATETIME(6)  NOT NULL,
    attempts      INT          NOT NULL DEFAULT 0,
    last_error    TEXT,
    available_at  DATETIME(6)  NOT NULL,
    dead          BOOLEAN      NOT NULL DEFAULT FALSE,
    dead_at       DATETIME(6),
    -- When the row's destination was first found missing, NULL while it is not waiting for
    -- one (see the PostgreSQL migration).
    waiting_since DATETIME(6),
    PRIMARY KEY (seq),
    UNIQUE KEY waybill_outbox_message_id (message_id),
    -- Finds the earlier rows of a key (a parked one holds its key back).
    KEY waybill_outbox_key (`key`(191), seq),
    KEY waybill_outbox_available (dead, available_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Shard leases: each relay publishes only the shards it holds an unexpired lease on.
-- shard_count records the layout the lease was taken under; relays with another count refuse.
CREATE TABLE IF NOT EXISTS waybill_shard_lease (
    shard       INT          NOT NULL,
    owner       VARCHAR(255) NOT NULL,
    expires_at  DATETIME(6)  NOT NULL,
    shard_count INT          NOT NULL,
    PRIMARY KEY (shard)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Live relays (renewed with their leases): the fair share of shards is counted over these.
CREATE TABLE IF NOT EXISTS waybill_relay (
    name       VARCHAR(255) NOT NULL,
    expires_at DATETIME(6)  NOT NULL,
    PRIMARY KEY (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The inbox: which messages each consumer group has handled (the SQL idempotency store).
-- Every claim stores a new fencing token; `dead` marks a message that went to the dead letter.
CREATE TABLE IF NOT EXISTS waybill_inbox (
    group_name VARCHAR(255) NOT NULL,
    message_id BINARY(16)   NOT NULL,
    done       BOOLEAN      NOT NULL,
    dead       BOOLEAN      NOT NULL DEFAULT FALSE,
    expires_at DATETIME(6)  NOT NULL,
    token      BINARY(16),
    PRIMARY KEY (group_name, message_id),
    KEY waybill_inbox_expiry (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
