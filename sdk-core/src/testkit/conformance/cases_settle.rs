//! Cases about settlement: ack, redelivery, retry with delay, dead letter.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::support::{
    expect_quiet, fail, next, numbered, publish_all, receive_acked, same_ids, setup, topic, unique,
};
use super::{case, Case, ConformanceTarget};
use crate::dead_letter::{DeadLetterRecord, ErrorClass};
use crate::message::Message;
use crate::wire_time;

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(acked_messages_are_not_redelivered),
        case!(unsettled_delivery_is_redelivered, needs redelivery),
        case!(retry_waits_its_delay_and_counts_the_attempt, needs delayed_retry),
        case!(retrying_every_first_delivery_still_delivers_all, needs delayed_retry),
        case!(dead_letter_carries_the_full_record, needs dead_letter),
    ]
}

async fn acked_messages_are_not_redelivered(t: &dyn ConformanceTarget) -> Result<(), String> {
    let scale = t.scale();
    let (topic, group, publisher) = setup(t, "ack").await?;
    let mut sub = t
        .subscriber(&topic, &group)
        .await
        .map_err(fail("subscriber"))?;
    let sent = numbered(10, 2);
    let ids: Vec<_> = sent.iter().map(Message::id).collect();
    publish_all(publisher.as_ref(), &topic, sent).await?;
    let got = receive_acked(sub.as_mut(), 10, scale.case_timeout).await?;
    same_ids(&ids, &got)?;
    sub.close().await.map_err(fail("close"))?;

    let mut reopened = t.subscriber(&topic, &group).await.map_err(fail("reopen"))?;
    expect_quiet(reopened.as_mut(), scale.quiet_period)
        .await
        .map_err(|e| format!("after reopening: {e}"))?;
    let live = Message::new("after");
    let live_id = live.id();
    publish_all(publisher.as_ref(), &topic, vec![live]).await?;
    let got = receive_acked(reopened.as_mut(), 1, scale.case_timeout).await?;
    same_ids(&[live_id], &got)
}

async fn unsettled_delivery_is_redelivered(t: &dyn ConformanceTarget) -> Result<(), String> {
    let scale = t.scale();
    let (topic, group, publisher) = setup(t, "redeliver").await?;
    let mut first = t
        .subscriber(&topic, &group)
        .await
        .map_err(fail("subscriber"))?;
    let message = Message::new("crash before ack");
    let id = message.id();
    publish_all(publisher.as_ref(), &topic, vec![message]).await?;
    let delivery = next(first.as_mut(), Instant::now() + scale.case_timeout).await?;
    if delivery.message().message().id() != id {
        return Err("first delivery is another message".to_owned());
    }
    drop(delivery);
    first.close().await.map_err(fail("close"))?;
    drop(first);

    let mut second = t.subscriber(&topic, &group).await.map_err(fail("reopen"))?;
    let got = receive_acked(second.as_mut(), 1, scale.case_timeout).await?;
    same_ids(&[id], &got)
}

async fn retry_waits_its_delay_and_counts_the_attempt(
    t: &dyn ConformanceTarget,
) -> Result<(), String> {
    let scale = t.scale();
    let topic = topic(t, "retry").await?;
    let publisher = t.publisher().await.map_err(fail("publisher"))?;
    let mut sub = t
        .subscriber(&topic, &unique("g"))
        .await
        .map_err(fail("subscriber"))?;
    let message = Message::new("try me twice").with_header("x-kept", "yes");
    let id = message.id();
    publish_all(publisher.as_ref(), &topic, vec![message]).await?;
    let first = next(sub.as_mut(), Instant::now() + scale.case_timeout).await?;
    if first.message().attempt() != 1 {
        return Err(format!(
            "first delivery is attempt {}",
            first.message().attempt()
        ));
    }
    let retried_at = Instant::now();
    first
        .retry(scale.retry_delay)
        .await
        .map_err(fail("retry"))?;
    let again = next(sub.as_mut(), Instant::now() + scale.case_timeout).await?;
    let waited = retried_at.elapsed();
    let incoming = again.message().clone();
    again.ack().await.map_err(fail("ack"))?;
    if incoming.message().id() != id {
        return Err("retried copy has another id".to_owned());
    }
    // Allow for clock granularity of brokers that schedule in milliseconds.
    if waited + Duration::from_millis(20) < scale.retry_delay {
        return Err(format!(
            "copy arrived after {waited:?}, before the {:?} delay",
            scale.retry_delay
        ));
    }
    if incoming.attempt() != 2 {
        return Err(format!(
            "retried copy is on attempt {}, expected 2",
            incoming.attempt()
        ));
    }
    if incoming.first_failure_at().is_none() {
        return Err("retried copy lacks its first-failure time".to_owned());
    }
    if incoming.message().headers().get("x-kept") != Some("yes") {
        return Err("retried copy lost a user header".to_owned());
    }
    expect_quiet(sub.as_mut(), scale.quiet_period).await
}

async fn retrying_every_first_delivery_still_delivers_all(
    t: &dyn ConformanceTarget,
) -> Result<(), String> {
    let scale = t.scale();
    let n = scale.messages;
    let topic = topic(t, "nackall").await?;
    let publisher = t.publisher().await.map_err(fail("publisher"))?;
    let mut sub = t
        .subscriber(&topic, &unique("g"))
        .await
        .map_err(fail("subscriber"))?;
    let sent = numbered(n, 5);
    let ids: Vec<_> = sent.iter().map(Message::id).collect();
    publish_all(publisher.as_ref(), &topic, sent).await?;
    let deadline = Instant::now() + scale.case_timeout;
    let mut second_round = Vec::new();
    while second_round.len() < n {
        let d = next(sub.as_mut(), deadline)
            .await
            .map_err(|e| format!("{} of {n} retried copies arrived: {e}", second_round.len()))?;
        if d.message().attempt() == 1 {
            d.retry(Duration::ZERO).await.map_err(fail("retry"))?;
        } else {
            second_round.push(d.message().clone());
            d.ack().await.map_err(fail("ack"))?;
        }
    }
    same_ids(&ids, &second_round)?;
    expect_quiet(sub.as_mut(), scale.quiet_period).await
}

async fn dead_letter_carries_the_full_record(t: &dyn ConformanceTarget) -> Result<(), String> {
    let scale = t.scale();
    let (topic, group, publisher) = setup(t, "dlq").await?;
    let mut sub = t
        .subscriber(&topic, &group)
        .await
        .map_err(fail("subscriber"))?;
    let mut dead = t
        .dead_letter_subscriber(&topic, &group)
        .await
        .map_err(fail("dead-letter subscriber"))?;
    let message = Message::new("poison")
        .with_key("k-1")
        .with_header("x-kept", "yes");
    let id = message.id();
    publish_all(publisher.as_ref(), &topic, vec![message]).await?;
    let delivery = next(sub.as_mut(), Instant::now() + scale.case_timeout).await?;
    let millis = |t: SystemTime| wire_time::parse_millis(&wire_time::format_millis(t)).unwrap();
    let record = DeadLetterRecord::for_delivery(
        delivery.message(),
        3,
        millis(SystemTime::now() - Duration::from_secs(5)),
        millis(SystemTime::now()),
        ErrorClass::Permanent,
        "cannot parse order: unexpected token",
    );
    delivery
        .dead_letter(record.clone())
        .await
        .map_err(fail("dead_letter"))?;

    let got = receive_acked(dead.as_mut(), 1, scale.case_timeout).await?;
    let dl = got[0].message();
    if dl.id() != id || dl.payload().as_ref() != b"poison" || dl.key() != Some("k-1") {
        return Err("dead letter lost the id, payload or key".to_owned());
    }
    if dl.headers().get("x-kept") != Some("yes") {
        return Err("dead letter lost a user header".to_owned());
    }
    let read = DeadLetterRecord::read_from(dl.headers()).map_err(fail("dead-letter record"))?;
    if read != record {
        return Err(format!(
            "record changed in transit: sent {record:?}, got {read:?}"
        ));
    }
    if read.origin != topic || read.group != group {
        return Err(format!(
            "record names {}/{} instead of {topic}/{group}",
            read.origin, read.group
        ));
    }
    expect_quiet(sub.as_mut(), scale.quiet_period)
        .await
        .map_err(|e| format!("original after dead-lettering: {e}"))
}
