//! # waybill-outbox
//!
//! Everything of waybill that lives in the application database, over `sqlx`: the outbox
//! table written in the business transaction, the relay that publishes it with confirms and
//! per-key order, the SQL idempotency store (inbox), migrations, and the `waybill-relay` sidecar.
//!
//! **Status: not implemented yet.** Nothing in this crate pretends to store or relay messages
//! so far. Until it lands, `waybill_core::InMemoryIdempotencyStore` covers single-process
//! consumers.
