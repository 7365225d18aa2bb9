-- The transactional outbox: rows written in the business transaction, relayed with confirms.
CREATE TABLE IF NOT EXISTS waybill_outbox (
    seq          bigserial PRIMARY KEY,
    message_id   uuid        NOT NULL UNIQUE,
    topic        text        NOT NULL,
    key          text,
    -- Stable hash of the key (of the id for unkeyed rows); shard = shard_hash % shard count.
    shard_hash   bigint      NOT NULL,
    payload      bytea       NOT NULL,
    headers      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL,
    enqueued_at  timestamptz NOT NULL DEFAULT now(),
    attempts     integer     NOT NULL DEFAULT 0,
    last_error   text,
    available_at timestamptz NOT NULL DEFAULT now(),
    dead         boolean     NOT NULL DEFAULT false,
    dead_at      timestamptz,
    -- The writing transaction: a row is relayed only once every older transaction finished.
    txid         xid8        NOT NULL DEFAULT pg_current_xact_id()
);

-- The relay finds the keys it must hold back (a parked row, or one not yet safe to relay)
-- through these two; both sets are small, so with planner statistics a batch costs about the
-- same at any backlog size.
CREATE INDEX IF NOT EXISTS waybill_outbox_available ON waybill_outbox (available_at) WHERE NOT dead;
CREATE INDEX IF NOT EXISTS waybill_outbox_txid ON waybill_outbox (txid) WHERE NOT dead;

-- Wake relays on every enqueue (polling stays as the fallback).
CREATE OR REPLACE FUNCTION waybill_outbox_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('waybill_outbox', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS waybill_outbox_inserted ON waybill_outbox;
CREATE TRIGGER waybill_outbox_inserted AFTER INSERT ON waybill_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION waybill_outbox_notify();

-- Shard leases: each relay publishes only the shards it holds an unexpired lease on.
-- shard_count records the layout the lease was taken under; relays with another count refuse.
CREATE TABLE IF NOT EXISTS waybill_shard_lease (
    shard       integer     PRIMARY KEY,
    owner       text        NOT NULL,
    expires_at  timestamptz NOT NULL,
    shard_count integer     NOT NULL
);

-- Live relays (renewed with their leases): the fair share of shards is counted over these.
CREATE TABLE IF NOT EXISTS waybill_relay (
    name       text        PRIMARY KEY,
    expires_at timestamptz NOT NULL
);

-- The inbox: which messages each consumer group has handled (the SQL idempotency store).
CREATE TABLE IF NOT EXISTS waybill_inbox (
    group_name text        NOT NULL,
    message_id uuid        NOT NULL,
    done       boolean     NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (group_name, message_id)
);

CREATE INDEX IF NOT EXISTS waybill_inbox_expiry ON waybill_inbox (expires_at);
