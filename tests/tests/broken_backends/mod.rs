//! In-memory backends broken on purpose, each in one way the conformance suite must catch:
//! it loses confirmed messages, duplicates deliveries, reorders a key's messages, or gives
//! every member of a group every message.

mod duplicating;
mod lossy;
mod reordering;
mod target;

pub use target::{Breakage, BrokenTarget};
