//! Leases and fencing: lapse and takeover, renewal, and a stale holder refused by its token.

use std::sync::Arc;
use std::time::Duration;

use super::{acquired, case, ensure, fresh_group, long_lived, step, Case, StoreTarget};
use crate::idempotency::{Claim, ClaimToken, Completion, IdempotencyStore};
use crate::message_id::MessageId;

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(a_lapsed_lease_is_taken_over_with_a_new_token),
        case!(renewals_keep_a_claim_past_its_first_lease),
        case!(a_stale_holder_cannot_renew_complete_or_release),
        case!(a_stale_holder_cannot_overwrite_the_new_holders_outcome),
    ]
}

/// Waits until a lease of `lease` taken before now has surely lapsed.
async fn outlive(lease: Duration) {
    tokio::time::sleep(lease + lease / 2).await;
}

async fn a_lapsed_lease_is_taken_over_with_a_new_token(
    target: &dyn StoreTarget,
) -> Result<(), String> {
    let store = long_lived(target).await?;
    let group = fresh_group("lapse");
    let lease = target.lease();
    let id = MessageId::new();
    let crashed = acquired(
        step(store.claim(&group, id, lease).await, "claim")?,
        "first",
    )?;
    outlive(lease).await;
    let next = acquired(
        step(
            store.claim(&group, id, lease).await,
            "claim after the lease lapsed",
        )?,
        "a crashed holder's lapsed lease",
    )?;
    ensure(next != crashed, || {
        "the takeover got the crashed holder's token".to_owned()
    })
}

async fn renewals_keep_a_claim_past_its_first_lease(
    target: &dyn StoreTarget,
) -> Result<(), String> {
    let store = long_lived(target).await?;
    let group = fresh_group("renew");
    let lease = target.lease();
    let id = MessageId::new();
    let token = acquired(
        step(store.claim(&group, id, lease).await, "claim")?,
        "first",
    )?;
    for round in 0..4 {
        tokio::time::sleep(lease / 2).await;
        step(store.renew(&group, id, token, lease).await, "renew")?;
        let other = step(store.claim(&group, id, lease).await, "competing claim")?;
        ensure(matches!(other, Claim::InFlight { .. }), || {
            format!("renewal {round}: a competing claim got {other:?} while the lease was renewed")
        })?;
    }
    step(
        store.complete(&group, id, token, Completion::Handled).await,
        "complete after renewals",
    )
}

/// A store, the token of a holder whose lease lapsed, and the token that took it over.
type TakenOver = (Arc<dyn IdempotencyStore>, ClaimToken, ClaimToken);

/// A message claimed by a holder whose lease then lapsed and was taken over.
async fn taken_over(
    target: &dyn StoreTarget,
    group: &str,
    id: MessageId,
) -> Result<TakenOver, String> {
    let store = long_lived(target).await?;
    let lease = target.lease();
    let stale = acquired(step(store.claim(group, id, lease).await, "claim")?, "first")?;
    outlive(lease).await;
    let current = acquired(
        step(store.claim(group, id, lease * 20).await, "takeover claim")?,
        "takeover after the lease lapsed",
    )?;
    Ok((store, stale, current))
}

async fn a_stale_holder_cannot_renew_complete_or_release(
    target: &dyn StoreTarget,
) -> Result<(), String> {
    let group = fresh_group("stale");
    let id = MessageId::new();
    let lease = target.lease();
    let (store, stale, current) = taken_over(target, &group, id).await?;
    match store.renew(&group, id, stale, lease).await {
        Err(e) if e.is_not_holder() => {}
        other => return Err(format!("stale renew: expected NotHolder, got {other:?}")),
    }
    for completion in [Completion::Handled, Completion::DeadLettered] {
        match store.complete(&group, id, stale, completion).await {
            Err(e) if e.is_not_holder() => {}
            other => {
                return Err(format!(
                    "stale complete({completion:?}): expected NotHolder, got {other:?}"
                ))
            }
        }
    }
    step(store.release(&group, id, stale).await, "stale release")?;
    let still = step(
        store.claim(&group, id, lease).await,
        "claim after the stale calls",
    )?;
    ensure(matches!(still, Claim::InFlight { .. }), || {
        format!("the stale holder's calls disturbed the current claim: a claim got {still:?}")
    })?;
    step(
        store
            .complete(&group, id, current, Completion::Handled)
            .await,
        "the current holder completes",
    )
}

async fn a_stale_holder_cannot_overwrite_the_new_holders_outcome(
    target: &dyn StoreTarget,
) -> Result<(), String> {
    let group = fresh_group("overwrite");
    let id = MessageId::new();
    let lease = target.lease();
    let (store, stale, current) = taken_over(target, &group, id).await?;
    step(
        store
            .complete(&group, id, current, Completion::Handled)
            .await,
        "the current holder completes",
    )?;
    match store
        .complete(&group, id, stale, Completion::DeadLettered)
        .await
    {
        Err(e) if e.is_not_holder() => {}
        other => {
            return Err(format!(
                "a stale dead letter over a completion: expected NotHolder, got {other:?}"
            ))
        }
    }
    step(store.release(&group, id, stale).await, "stale release")?;
    let after = step(store.claim(&group, id, lease).await, "claim")?;
    ensure(after == Claim::AlreadyDone, || {
        format!("the new holder's completion was overwritten: a claim got {after:?}")
    })
}
