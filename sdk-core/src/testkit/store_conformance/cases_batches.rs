//! Many at once: `claim_many` and `complete_many` answer each message as `claim` and
//! `complete` would, whether the store overrides them or keeps the defaults.

use super::{acquired, case, ensure, finished, fresh_group, long_lived, step, Case, StoreTarget};
use crate::idempotency::{Claim, Completion};
use crate::message_id::MessageId;

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(claim_many_answers_each_message_as_claim_would),
        case!(complete_many_records_only_the_holders_outcomes),
    ]
}

async fn claim_many_answers_each_message_as_claim_would(
    target: &dyn StoreTarget,
) -> Result<(), String> {
    let store = long_lived(target).await?;
    let group = fresh_group("claim-many");
    let lease = target.lease();
    let (handled, dead, held, new) = (
        MessageId::new(),
        MessageId::new(),
        MessageId::new(),
        MessageId::new(),
    );
    finished(&*store, &group, handled, lease, Completion::Handled).await?;
    finished(&*store, &group, dead, lease, Completion::DeadLettered).await?;
    acquired(
        step(store.claim(&group, held, lease * 10).await, "claim")?,
        "held",
    )?;
    let asked = [handled, dead, held, new, new];
    let answers = store.claim_many(&group, &asked, lease).await;
    ensure(answers.len() == asked.len(), || {
        format!("{} answers for {} ids", answers.len(), asked.len())
    })?;
    let answers: Vec<Claim> = answers
        .into_iter()
        .map(|a| step(a, "claim_many"))
        .collect::<Result<_, _>>()?;
    ensure(answers[0] == Claim::AlreadyDone, || {
        format!(
            "a handled message: expected AlreadyDone, got {:?}",
            answers[0]
        )
    })?;
    ensure(answers[1] == Claim::DeadLettered, || {
        format!(
            "a dead-lettered message: expected DeadLettered, got {:?}",
            answers[1]
        )
    })?;
    ensure(matches!(answers[2], Claim::InFlight { .. }), || {
        format!(
            "a message another holds: expected InFlight, got {:?}",
            answers[2]
        )
    })?;
    let token = acquired(answers[3], "a new message")?;
    ensure(matches!(answers[4], Claim::InFlight { .. }), || {
        format!(
            "the second copy of an id in one call: expected InFlight, got {:?}",
            answers[4]
        )
    })?;
    step(
        store
            .complete(&group, new, token, Completion::Handled)
            .await,
        "complete the message claim_many acquired",
    )
}

async fn complete_many_records_only_the_holders_outcomes(
    target: &dyn StoreTarget,
) -> Result<(), String> {
    let store = long_lived(target).await?;
    let group = fresh_group("complete-many");
    let lease = target.lease();
    let (ok, dead, lost) = (MessageId::new(), MessageId::new(), MessageId::new());
    let mut tokens = Vec::new();
    for (ids, lease) in [(vec![ok, dead], lease * 20), (vec![lost], lease)] {
        for answer in store.claim_many(&group, &ids, lease).await {
            tokens.push(acquired(step(answer, "claim_many")?, "a new message")?);
        }
    }
    // `lost`'s lease lapses and another consumer takes it over.
    tokio::time::sleep(lease.mul_f32(1.5)).await;
    acquired(
        step(store.claim(&group, lost, lease * 20).await, "take over")?,
        "the lapsed claim",
    )?;
    let outcomes = [
        (ok, tokens[0], Completion::Handled),
        (dead, tokens[1], Completion::DeadLettered),
        (lost, tokens[2], Completion::Handled),
    ];
    let recorded = store.complete_many(&group, &outcomes).await;
    ensure(recorded.len() == 3, || {
        format!("{} answers for 3", recorded.len())
    })?;
    step(recorded[0].as_ref(), "complete_many of a holder")?;
    step(recorded[1].as_ref(), "complete_many (dead) of a holder")?;
    ensure(matches!(&recorded[2], Err(e) if e.is_not_holder()), || {
        format!(
            "the lapsed holder's completion: expected NotHolder, got {:?}",
            recorded[2]
        )
    })?;
    let after: Vec<Claim> = store
        .claim_many(&group, &[ok, dead, lost], lease)
        .await
        .into_iter()
        .map(|a| step(a, "claim_many after"))
        .collect::<Result<_, _>>()?;
    ensure(
        after[..2] == [Claim::AlreadyDone, Claim::DeadLettered],
        || format!("completed, dead-lettered: got {:?}", &after[..2]),
    )?;
    ensure(matches!(after[2], Claim::InFlight { .. }), || {
        format!(
            "the new holder's claim stands: expected InFlight, got {:?}",
            after[2]
        )
    })
}
