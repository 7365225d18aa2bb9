//! Outcomes: kept over late releases, recorded twice, dead until reopened, expired by TTL.

use std::time::Duration;

use super::{acquired, case, ensure, finished, fresh_group, long_lived, step, Case, StoreTarget};
use crate::idempotency::{Claim, Completion};
use crate::message_id::MessageId;

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(a_completion_is_kept_over_a_late_release),
        case!(completing_twice_with_the_same_token_is_fine),
        case!(a_dead_letter_stays_dead_until_reopened),
        case!(finished_entries_expire_after_the_retention),
    ]
}

async fn a_completion_is_kept_over_a_late_release(target: &dyn StoreTarget) -> Result<(), String> {
    let store = long_lived(target).await?;
    let group = fresh_group("late-release");
    let lease = target.lease();
    let id = MessageId::new();
    let token = finished(&*store, &group, id, lease, Completion::Handled).await?;
    step(store.release(&group, id, token).await, "late release")?;
    let after = step(store.claim(&group, id, lease).await, "claim")?;
    ensure(after == Claim::AlreadyDone, || {
        format!("a release undid a completion: a claim got {after:?}")
    })
}

async fn completing_twice_with_the_same_token_is_fine(
    target: &dyn StoreTarget,
) -> Result<(), String> {
    let store = long_lived(target).await?;
    let group = fresh_group("twice");
    let lease = target.lease();
    let id = MessageId::new();
    let token = acquired(
        step(store.claim(&group, id, lease).await, "claim")?,
        "first",
    )?;
    for n in ["first", "second"] {
        step(
            store.complete(&group, id, token, Completion::Handled).await,
            &format!("{n} completion with the holder's token"),
        )?;
    }
    step(
        store.renew(&group, id, token, lease).await,
        "renewing a claim its holder finished",
    )
}

async fn a_dead_letter_stays_dead_until_reopened(target: &dyn StoreTarget) -> Result<(), String> {
    let store = long_lived(target).await?;
    let group = fresh_group("dead");
    let lease = target.lease();
    let (dead, handled, held) = (MessageId::new(), MessageId::new(), MessageId::new());
    let token = acquired(
        step(store.claim(&group, dead, lease).await, "claim")?,
        "dead",
    )?;
    ensure(!step(store.reopen(&group, dead).await, "reopen")?, || {
        "reopen reported a dead mark on a message only claimed".to_owned()
    })?;
    step(
        store
            .complete(&group, dead, token, Completion::DeadLettered)
            .await,
        "complete as dead-lettered",
    )?;
    let again = step(store.claim(&group, dead, lease).await, "claim a dead one")?;
    ensure(again == Claim::DeadLettered, || {
        format!("a dead-lettered message: expected DeadLettered, got {again:?}")
    })?;
    ensure(step(store.reopen(&group, dead).await, "reopen")?, || {
        "reopen did not find the dead mark".to_owned()
    })?;
    acquired(
        step(store.claim(&group, dead, lease).await, "claim after reopen")?,
        "a reopened message",
    )?;

    finished(&*store, &group, handled, lease, Completion::Handled).await?;
    acquired(
        step(store.claim(&group, held, lease).await, "claim")?,
        "held",
    )?;
    for (id, what) in [(handled, "a handled"), (held, "a held")] {
        ensure(!step(store.reopen(&group, id).await, "reopen")?, || {
            format!("reopen reported {what} message as dead")
        })?;
    }
    let kept = step(store.claim(&group, handled, lease).await, "claim")?;
    ensure(kept == Claim::AlreadyDone, || {
        format!("reopen touched a handled message: a claim got {kept:?}")
    })?;
    let still = step(store.claim(&group, held, lease).await, "claim")?;
    ensure(matches!(still, Claim::InFlight { .. }), || {
        format!("reopen touched a held message: a claim got {still:?}")
    })
}

async fn finished_entries_expire_after_the_retention(
    target: &dyn StoreTarget,
) -> Result<(), String> {
    let retention = Duration::from_secs(1);
    let store = target
        .store(retention)
        .await
        .map_err(|e| format!("could not make the store: {e}"))?;
    let group = fresh_group("ttl");
    let lease = target.lease();
    let id = MessageId::new();
    finished(&*store, &group, id, lease, Completion::Handled).await?;
    let kept = step(
        store.claim(&group, id, lease).await,
        "claim within the retention",
    )?;
    ensure(kept == Claim::AlreadyDone, || {
        format!("within the retention: expected AlreadyDone, got {kept:?}")
    })?;
    tokio::time::sleep(retention + Duration::from_millis(600)).await;
    acquired(
        step(
            store.claim(&group, id, lease).await,
            "claim past the retention",
        )?,
        "a message whose done marker outlived the retention",
    )?;
    Ok(())
}
