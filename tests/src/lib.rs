//! Integration tests of waybill live in `tests/`: conformance runs of every backend against its
//! real broker (and the in-memory one), cross-crate scenarios and chaos tests.
