//! The idempotency-store conformance suite: one set of cases every [`IdempotencyStore`] runs
//! against its real database or server.
//!
//! A store implements [`StoreTarget`] (how to make a store with a given retention) and calls
//! [`run`]; the report is the same [`ConformanceReport`] the broker suite prints:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use waybill_core::testkit::store_conformance::{run, StoreTarget};
//! use waybill_core::{BoxError, IdempotencyStore, InMemoryIdempotencyStore};
//!
//! struct Memory;
//!
//! #[async_trait::async_trait]
//! impl StoreTarget for Memory {
//!     fn name(&self) -> String {
//!         "in-memory".into()
//!     }
//!     async fn store(&self, retention: Duration) -> Result<Arc<dyn IdempotencyStore>, BoxError> {
//!         Ok(Arc::new(InMemoryIdempotencyStore::new(retention, 10_000)))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! run(&Memory).await.assert_passed();
//! # }
//! ```
//!
//! What every store must do (each line is a case):
//! - a claim is `Acquired` with a token, a second claim is `InFlight` for the lease's rest,
//!   a completion answers `AlreadyDone`, and groups do not see each other's claims;
//! - a release frees the message at once; a lease that lapses is taken over with a new token;
//! - renewals keep a claim past its first lease;
//! - a holder whose lease lapsed and was taken over cannot renew, complete or release
//!   (refused as `NotHolder`), and the new holder's outcome stands;
//! - a completion is kept over a late release, and completing twice with the same token is fine;
//! - a dead-lettered message stays dead until reopened, and reopen touches nothing else;
//! - finished entries are forgotten after the retention (TTL expiry);
//! - of many concurrent claimers of one message, exactly one wins;
//! - `claim_many` and `complete_many` answer each message as `claim` and `complete` would
//!   (a repeated id in one call waits behind its first copy; a lapsed holder's completion is
//!   refused while the others are recorded).

mod cases_batches;
mod cases_claims;
mod cases_fencing;
mod cases_outcomes;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::future::BoxFuture;

use super::conformance::{CaseOutcome, CaseResult, ConformanceReport};
use crate::handler::BoxError;
use crate::idempotency::{Claim, ClaimToken, Completion, IdempotencyStore};
use crate::message_id::MessageId;

/// What a store provides to be checked.
///
/// Every case uses fresh group names and message ids, so one database may serve every case.
#[async_trait]
pub trait StoreTarget: Send + Sync {
    /// Store name for the report.
    fn name(&self) -> String;

    /// A store that forgets finished entries after `retention`. The suite asks for short
    /// retentions (about a second) to check expiry; a store that warns about them may.
    async fn store(&self, retention: Duration) -> Result<Arc<dyn IdempotencyStore>, BoxError>;

    /// The lease the cases use (default 400 ms); lapses are waited for with 1.5 times it.
    /// Raise it for a store whose clock or round trips are coarse.
    fn lease(&self) -> Duration {
        Duration::from_millis(400)
    }

    /// How long one case may take (default 30 s).
    fn case_timeout(&self) -> Duration {
        Duration::from_secs(30)
    }
}

/// Retention of the stores used by the cases that do not check expiry.
const LONG_RETENTION: Duration = Duration::from_secs(24 * 3600);

type CaseFn = for<'a> fn(&'a dyn StoreTarget) -> BoxFuture<'a, Result<(), String>>;

/// A case: its name for the report and its body.
struct Case {
    name: &'static str,
    run: CaseFn,
}

/// Declares a case from an `async fn(&dyn StoreTarget) -> Result<(), String>`.
macro_rules! case {
    ($body:ident) => {
        super::Case {
            name: stringify!($body),
            run: |t| Box::pin($body(t)),
        }
    };
}
use case;

fn cases() -> Vec<Case> {
    let mut all = Vec::new();
    all.extend(cases_claims::cases());
    all.extend(cases_fencing::cases());
    all.extend(cases_outcomes::cases());
    all.extend(cases_batches::cases());
    all
}

/// Runs every case against `target`, one after another, and returns the report.
pub async fn run(target: &dyn StoreTarget) -> ConformanceReport {
    let timeout = target.case_timeout();
    let mut results = Vec::new();
    for case in cases() {
        let started = Instant::now();
        let outcome = match tokio::time::timeout(timeout, (case.run)(target)).await {
            Ok(Ok(())) => CaseOutcome::Passed,
            Ok(Err(why)) => CaseOutcome::Failed(why),
            Err(_) => CaseOutcome::Failed(format!("timed out after {timeout:?}")),
        };
        results.push(CaseResult {
            name: case.name,
            outcome,
            elapsed: started.elapsed(),
        });
    }
    ConformanceReport {
        backend: target.name(),
        cases: results,
    }
}

/// A store with a long retention, or the case's error.
async fn long_lived(target: &dyn StoreTarget) -> Result<Arc<dyn IdempotencyStore>, String> {
    target
        .store(LONG_RETENTION)
        .await
        .map_err(|e| format!("could not make the store: {e}"))
}

/// A group name no other case (or earlier run on the same database) uses.
fn fresh_group(case: &str) -> String {
    format!("{case}-{}", MessageId::new())
}

/// The token of an `Acquired` claim, or an error naming `what` was expected.
fn acquired(claim: Claim, what: &str) -> Result<ClaimToken, String> {
    match claim {
        Claim::Acquired(token) => Ok(token),
        other => Err(format!("{what}: expected Acquired, got {other:?}")),
    }
}

/// Claims the new message `id` and records `completion` for it; returns the claim's token.
async fn finished(
    store: &dyn IdempotencyStore,
    group: &str,
    id: MessageId,
    lease: Duration,
    completion: Completion,
) -> Result<ClaimToken, String> {
    let token = acquired(
        step(store.claim(group, id, lease).await, "claim")?,
        "a new message",
    )?;
    step(
        store.complete(group, id, token, completion).await,
        &format!("complete({completion:?})"),
    )?;
    Ok(token)
}

/// Fails with `why` unless `cond` holds.
fn ensure(cond: bool, why: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(why())
    }
}

/// Turns a store error into the case's error, naming the step.
fn step<T, E: std::fmt::Display>(result: Result<T, E>, what: &str) -> Result<T, String> {
    result.map_err(|e| format!("{what}: {e}"))
}
