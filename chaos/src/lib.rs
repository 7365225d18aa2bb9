//! waybill's chaos harness: prove, on your own brokers, database and consumers, that nothing
//! confirmed is lost, no effect is applied twice and per-key order holds while things crash.
//!
//! A run is described by a [`Scenario`] (a TOML file): a PostgreSQL database holding the outbox,
//! the consumers' inbox and the run's [`ledger`]; a broker; producers writing to the outbox (or
//! publishing directly); relays and consumers started as processes of their own; [`FaultProxy`]s
//! in front of the broker or the database; and a [`FaultSchedule`] drawn from a seed, so the
//! same seed gives the same faults. Faults kill and restart roles (SIGKILL), run the operator's
//! own commands (restart a broker, restart PostgreSQL immediately) and cut, refuse, black-hole,
//! slow down or half-close connections through the proxies.
//!
//! At the end the ledger (in the database, so it survives the faults) is classified as Jepsen's
//! checkers do — confirmed and lost, applied twice, applied but never sent, per-key order
//! violations, recovered (unconfirmed but delivered), and dead (given up on by a relay and held
//! in the outbox for the operator, which is not a loss) — into a [`Verdict`], written as JSON next
//! to a [`timeline`] picture (SVG) of throughput, lag and the faults. A fault that failed in the
//! middle of a run marks the verdict incomplete rather than letting it pass.
//!
//! The `waybill chaos` command runs scenarios; this crate is its engine and can be driven from
//! a test as well ([`run()`]).

mod dead;
mod error;
mod faults;
pub mod ledger;
mod process;
mod producer;
pub mod proxy;
pub mod roles;
pub mod run;
pub mod scenario;
pub mod schedule;
pub mod timeline;
pub mod verdict;

pub use error::ChaosError;
pub use proxy::{FaultProxy, ProxyCounters, ProxyFault};
pub use run::{run, Stack};
pub use scenario::Scenario;
pub use schedule::{FaultAction, FaultSchedule, ScheduledFault};
pub use verdict::Verdict;
