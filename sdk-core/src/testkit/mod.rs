//! Test helpers for backends and applications (feature `testkit`).
//!
//! - [`conformance`]: the suite every backend runs against its real broker.
//! - [`store_conformance`]: the suite every idempotency store runs against its real server.
//! - [`key_hold_conformance`]: the checks every key-hold store passes.
//! - [`Ledger`]: classifies every message of a run as delivered, lost, duplicated or unexpected.

pub mod conformance;
pub mod key_hold_conformance;
mod ledger;
pub mod store_conformance;

pub use ledger::{Ledger, LedgerReport};
