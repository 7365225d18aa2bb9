//! Claims: acquired, in flight, done, separated by group, released, and contended.

use std::sync::Arc;

use futures_util::future::join_all;

use super::{acquired, case, ensure, finished, fresh_group, long_lived, step, Case, StoreTarget};
use crate::idempotency::{Claim, Completion};
use crate::message_id::MessageId;

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(a_claim_is_in_flight_until_completed_then_done),
        case!(groups_do_not_see_each_others_claims),
        case!(a_release_frees_the_message_at_once),
        case!(of_concurrent_claimers_exactly_one_wins),
    ]
}

async fn a_claim_is_in_flight_until_completed_then_done(
    target: &dyn StoreTarget,
) -> Result<(), String> {
    let store = long_lived(target).await?;
    let group = fresh_group("in-flight");
    let lease = target.lease();
    let id = MessageId::new();
    let token = acquired(
        step(store.claim(&group, id, lease).await, "claim")?,
        "first claim",
    )?;
    match step(store.claim(&group, id, lease).await, "second claim")? {
        Claim::InFlight { lease_remaining } => ensure(lease_remaining <= lease, || {
            format!("lease_remaining {lease_remaining:?} exceeds the lease {lease:?}")
        })?,
        other => return Err(format!("second claim: expected InFlight, got {other:?}")),
    }
    step(
        store.complete(&group, id, token, Completion::Handled).await,
        "complete",
    )?;
    let after = step(
        store.claim(&group, id, lease).await,
        "claim after completion",
    )?;
    ensure(after == Claim::AlreadyDone, || {
        format!("claim after completion: expected AlreadyDone, got {after:?}")
    })
}

async fn groups_do_not_see_each_others_claims(target: &dyn StoreTarget) -> Result<(), String> {
    let store = long_lived(target).await?;
    let (first, second) = (fresh_group("group-a"), fresh_group("group-b"));
    let lease = target.lease();
    let id = MessageId::new();
    finished(&*store, &first, id, lease, Completion::Handled).await?;
    acquired(
        step(store.claim(&second, id, lease).await, "claim in group b")?,
        "group b claims a message group a finished",
    )?;
    Ok(())
}

async fn a_release_frees_the_message_at_once(target: &dyn StoreTarget) -> Result<(), String> {
    let store = long_lived(target).await?;
    let group = fresh_group("release");
    let lease = target.lease();
    let id = MessageId::new();
    let first = acquired(
        step(store.claim(&group, id, lease).await, "claim")?,
        "first",
    )?;
    step(store.release(&group, id, first).await, "release")?;
    let second = acquired(
        step(store.claim(&group, id, lease).await, "claim after release")?,
        "claim right after a release",
    )?;
    ensure(second != first, || {
        "a new claim got the released claim's token".to_owned()
    })
}

async fn of_concurrent_claimers_exactly_one_wins(target: &dyn StoreTarget) -> Result<(), String> {
    const CLAIMERS: usize = 12;
    const MESSAGES: usize = 20;
    let store = long_lived(target).await?;
    let group: Arc<str> = fresh_group("contended").into();
    let lease = target.lease() * 20;
    for round in 0..MESSAGES {
        let id = MessageId::new();
        let claims = join_all((0..CLAIMERS).map(|_| {
            let (store, group) = (store.clone(), group.clone());
            tokio::spawn(async move { store.claim(&group, id, lease).await })
        }))
        .await;
        let mut winners = 0;
        for claim in claims {
            let claim = claim.map_err(|e| format!("a claimer panicked: {e}"))?;
            match step(claim, "concurrent claim")? {
                Claim::Acquired(_) => winners += 1,
                Claim::InFlight { .. } => {}
                other => return Err(format!("round {round}: unexpected {other:?}")),
            }
        }
        ensure(winners == 1, || {
            format!(
                "round {round}: {winners} of {CLAIMERS} concurrent claimers acquired the message"
            )
        })?;
    }
    Ok(())
}
