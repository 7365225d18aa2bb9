//! waybill inside a testcontainers suite: see `tests/containers.rs` and this crate's README.
//! The library part is empty; the example is the test.
