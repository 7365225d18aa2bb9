//! Test helpers for backends and applications (feature `testkit`).
//!
//! - [`conformance`]: the suite every backend runs against its real broker.
//! - [`Ledger`]: classifies every message of a run as delivered, lost, duplicated or unexpected.

pub mod conformance;
mod ledger;

pub use ledger::{Ledger, LedgerReport};
