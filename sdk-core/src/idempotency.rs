//! The processed-message store that makes a redelivered message have no second effect.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::message_id::MessageId;

/// The fencing token of one claim: a store hands a new one out with every
/// [`Claim::Acquired`], and [`IdempotencyStore::complete`], [`IdempotencyStore::renew`] and
/// [`IdempotencyStore::release`] (and the SQL stores' transactional markers) act only for the
/// current holder's token. A holder whose lease lapsed and was taken over can therefore never
/// record a second completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClaimToken(Uuid);

impl ClaimToken {
    /// A new random token.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    /// A token read back from a store.
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The token as a UUID (how SQL stores keep it).
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

/// Result of [`IdempotencyStore::claim`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This caller holds the message for the lease, proven by the token: handle it, then
    /// `complete` or `release` with that token.
    Acquired(ClaimToken),
    /// The message was handled to completion before: skip it and acknowledge.
    AlreadyDone,
    /// The message was dead-lettered before: a further copy is skipped and acknowledged, unless
    /// it is a replay (header [`crate::header_names::REPLAYED_AT`]), which
    /// [`IdempotencyStore::reopen`]s it first.
    DeadLettered,
    /// Another holder's lease is live: wait about this long and claim again.
    InFlight {
        /// Time left on the other holder's lease.
        lease_remaining: Duration,
    },
}

/// How a claim ended, recorded by [`IdempotencyStore::complete`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    /// The handler succeeded: later copies answer [`Claim::AlreadyDone`].
    Handled,
    /// The message went to the dead letter: later copies answer [`Claim::DeadLettered`] until
    /// a replay reopens it.
    DeadLettered,
}

/// The claim the Processor holds on a message while its handler runs, readable from
/// [`crate::IncomingMessage::claim`]: what a transactional marker (the SQL stores'
/// `mark_done_in`) needs to write the processed marker for the current holder only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldClaim {
    group: Arc<str>,
    id: MessageId,
    token: ClaimToken,
}

impl HeldClaim {
    /// The claim `token` on `id` for `group`.
    pub fn new(group: Arc<str>, id: MessageId, token: ClaimToken) -> Self {
        Self { group, id, token }
    }

    /// The consumer group (the idempotency scope).
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The claimed message.
    pub fn id(&self) -> MessageId {
        self.id
    }

    /// The fencing token.
    pub fn token(&self) -> ClaimToken {
        self.token
    }
}

/// What went wrong in a store operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The store could not answer (unreachable, timed out, failed): the operation may succeed
    /// when tried again.
    Unavailable,
    /// The caller's token is not the current holder's: its lease lapsed and another consumer
    /// claimed the message (or the entry is gone). Trying again cannot succeed.
    NotHolder,
}

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
#[error("idempotency store {operation} failed: {reason}")]
pub struct StoreError {
    operation: &'static str,
    kind: StoreErrorKind,
    reason: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// `operation` (`claim`, `renew`, `complete`, `release`, `reopen`) failed because the store
    /// could not answer: `reason`.
    pub fn new(operation: &'static str, reason: impl Into<String>) -> Self {
        Self {
            operation,
            kind: StoreErrorKind::Unavailable,
            reason: reason.into(),
            source: None,
        }
    }

    /// `operation` was refused because the caller no longer holds the claim.
    pub fn not_holder(operation: &'static str) -> Self {
        Self {
            operation,
            kind: StoreErrorKind::NotHolder,
            reason: "the claim lapsed and is held by another consumer (or is gone): \
                     this holder may not record an outcome"
                .to_owned(),
            source: None,
        }
    }

    /// Attaches the underlying error.
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The same failure (operation, kind and reason) without its source, which cannot be
    /// cloned: for an answer that stands for several messages, such as one statement's error
    /// for every message of a [`IdempotencyStore::claim_many`].
    pub fn copy(&self) -> Self {
        Self {
            operation: self.operation,
            kind: self.kind,
            reason: self.reason.clone(),
            source: None,
        }
    }

    /// The failed operation.
    pub fn operation(&self) -> &'static str {
        self.operation
    }

    /// What went wrong.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// Whether the caller lost its claim (see [`StoreErrorKind::NotHolder`]).
    pub fn is_not_holder(&self) -> bool {
        self.kind == StoreErrorKind::NotHolder
    }
}

/// Records which messages a consumer group has handled, keyed by `(group, message id)`.
///
/// Protocol: `claim` right before handling; while handling, `renew` the lease; on success
/// `complete(Handled)`, after a confirmed dead letter `complete(DeadLettered)`, on a failure
/// that will be retried `release`. Every call after `claim` carries the claim's
/// [`ClaimToken`] and is refused ([`StoreErrorKind::NotHolder`]) when another consumer has
/// taken the message over, so a holder that outlived its lease can never record a second
/// effect. A holder that crashes loses its claim when the lease runs out. Entries for
/// finished messages are kept for a retention period that must exceed the broker's
/// redelivery horizon (how late a duplicate can still arrive).
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Tries to take `id` for `group` for `lease`.
    ///
    /// # Errors
    /// [`StoreError`] when the store is unreachable; the runtime then does not handle the message.
    async fn claim(&self, group: &str, id: MessageId, lease: Duration)
        -> Result<Claim, StoreError>;

    /// Extends the claim `token` holds on `id` to `lease` from now.
    ///
    /// # Errors
    /// [`StoreErrorKind::NotHolder`] when the claim was taken over, finished or is gone;
    /// [`StoreErrorKind::Unavailable`] when the store could not answer.
    async fn renew(
        &self,
        group: &str,
        id: MessageId,
        token: ClaimToken,
        lease: Duration,
    ) -> Result<(), StoreError>;

    /// Records how the claim `token` holds on `id` ended; later claims answer
    /// [`Claim::AlreadyDone`] or [`Claim::DeadLettered`]. Recording again with the same token
    /// succeeds (a transactional marker written by the handler may already be there).
    ///
    /// # Errors
    /// [`StoreErrorKind::NotHolder`] when another consumer holds or finished the message;
    /// [`StoreErrorKind::Unavailable`]: the message may then be handled again if delivered again.
    async fn complete(
        &self,
        group: &str,
        id: MessageId,
        token: ClaimToken,
        completion: Completion,
    ) -> Result<(), StoreError>;

    /// Gives up the claim `token` holds without finishing, so the next claim is `Acquired` at
    /// once. A token that no longer holds the claim changes nothing.
    ///
    /// # Errors
    /// [`StoreError`]; the claim then lapses when its lease runs out.
    async fn release(
        &self,
        group: &str,
        id: MessageId,
        token: ClaimToken,
    ) -> Result<(), StoreError>;

    /// Forgets that `id` was dead-lettered, so a replayed copy can be claimed and handled;
    /// returns whether there was such a mark. Completed and held entries are left alone.
    ///
    /// # Errors
    /// [`StoreError`] when the store could not answer.
    async fn reopen(&self, group: &str, id: MessageId) -> Result<bool, StoreError>;

    /// Claims several messages at once: one answer per id, in order, as
    /// [`claim`](Self::claim) would give. A store that can do it in one round trip overrides
    /// this (the PostgreSQL inbox does); the default claims them one by one, concurrently.
    /// The Processor calls it for the claims that wait at the same moment when the store
    /// [`answers_many_at_once`](Self::answers_many_at_once).
    ///
    /// An id given twice is claimed once: the second answer is
    /// [`Claim::InFlight`] when the first acquired it.
    async fn claim_many(
        &self,
        group: &str,
        ids: &[MessageId],
        lease: Duration,
    ) -> Vec<Result<Claim, StoreError>> {
        let copies = FirstCopies::of(ids);
        let answers = futures_util::future::join_all(
            copies
                .unique()
                .iter()
                .map(|id| self.claim(group, *id, lease)),
        )
        .await;
        copies.spread(answers, lease)
    }

    /// Whether [`claim_many`](Self::claim_many) and [`complete_many`](Self::complete_many)
    /// answer a whole call in one round trip (default `false`). The Processor then sends the
    /// claims and completions its messages ask for at the same moment together; for a store
    /// that answers them one by one anyway that would only add a hop.
    fn answers_many_at_once(&self) -> bool {
        false
    }

    /// Records several outcomes at once: one answer per `(id, token, completion)`, in order,
    /// as [`complete`](Self::complete) would give. The default records them one by one,
    /// concurrently; a store that can do it in one round trip overrides it.
    async fn complete_many(
        &self,
        group: &str,
        outcomes: &[(MessageId, ClaimToken, Completion)],
    ) -> Vec<Result<(), StoreError>> {
        futures_util::future::join_all(
            outcomes
                .iter()
                .map(|(id, token, completion)| self.complete(group, *id, *token, *completion)),
        )
        .await
    }

    /// How long a finished message is remembered, when the store knows (the Processor
    /// compares it with the [`RedeliveryHorizon`](crate::RedeliveryHorizon) at build).
    /// `None` (the default) skips that check.
    fn retention(&self) -> Option<Duration> {
        None
    }
}

/// The ids of a [`IdempotencyStore::claim_many`] call, each claimed once: a store claims
/// [`unique`](Self::unique) and hands the answers to [`spread`](Self::spread), which gives a
/// repeated id its first copy's answer, but [`Claim::InFlight`] where the first copy acquired
/// the claim (its holder is the first copy's caller).
#[derive(Debug)]
pub struct FirstCopies {
    ids: Vec<MessageId>,
    firsts: Vec<bool>,
    unique: Vec<MessageId>,
}

impl FirstCopies {
    /// The first copies of `ids`, in order.
    pub fn of(ids: &[MessageId]) -> Self {
        let mut seen = std::collections::HashSet::with_capacity(ids.len());
        let firsts: Vec<bool> = ids.iter().map(|id| seen.insert(*id)).collect();
        let unique = ids
            .iter()
            .zip(&firsts)
            .filter(|(_, first)| **first)
            .map(|(id, _)| *id)
            .collect();
        Self {
            ids: ids.to_vec(),
            firsts,
            unique,
        }
    }

    /// Each id once, in the order of its first copy.
    pub fn unique(&self) -> &[MessageId] {
        &self.unique
    }

    /// One answer per id of the call, from `answers` (one per [`unique`](Self::unique) id,
    /// in order); a missing answer is an error.
    pub fn spread(
        &self,
        answers: Vec<Result<Claim, StoreError>>,
        lease: Duration,
    ) -> Vec<Result<Claim, StoreError>> {
        let unanswered = || StoreError::new("claim", "no answer for this id");
        let mut by_id = std::collections::HashMap::with_capacity(self.unique.len());
        let mut answers = answers.into_iter();
        let mut out = Vec::with_capacity(self.ids.len());
        for (id, first) in self.ids.iter().zip(&self.firsts) {
            let answer = if *first {
                let answer = answers.next().unwrap_or_else(|| Err(unanswered()));
                by_id.insert(*id, repeat_of(&answer, lease));
                answer
            } else {
                by_id
                    .get(id)
                    .map(|a| repeat_of(a, lease))
                    .unwrap_or_else(|| Err(unanswered()))
            };
            out.push(answer);
        }
        out
    }
}

/// What a second copy of an id gets, given the first copy's answer.
fn repeat_of(first: &Result<Claim, StoreError>, lease: Duration) -> Result<Claim, StoreError> {
    match first {
        Ok(Claim::Acquired(_)) => Ok(Claim::InFlight {
            lease_remaining: lease,
        }),
        Ok(other) => Ok(*other),
        Err(e) => Err(e.copy()),
    }
}
