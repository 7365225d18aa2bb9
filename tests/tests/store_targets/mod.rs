//! Targets and broken stores of the store-suite runs.

pub mod broken;
pub mod targets;
