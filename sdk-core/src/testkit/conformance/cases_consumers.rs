//! Cases about consumers: competing subscribers, groups, close and reopen.

use std::collections::HashMap;

use futures_util::future::join_all;
use tokio::time::Instant;

use super::group_drain::drain_together;
use super::support::{
    expect_quiet, fail, next, numbered, publish_all, receive_acked, same_ids, setup, topic, unique,
};
use super::{case, Case, ConformanceTarget};
use crate::message::Message;
use crate::message_id::MessageId;
use crate::subscriber::Subscriber;

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(competing_consumers_lose_nothing, needs competing_consumers),
        case!(many_publishers_and_subscribers_lose_nothing, needs competing_consumers),
        case!(independent_groups_each_get_everything, needs independent_groups),
        case!(close_and_reopen_midstream_loses_nothing),
        case!(closed_subscriber_ends_its_stream),
    ]
}

async fn competing_consumers_lose_nothing(t: &dyn ConformanceTarget) -> Result<(), String> {
    let scale = t.scale();
    let n = scale.messages * 5;
    let topic = topic(t, "compete").await?;
    let group = unique("g");
    let mut subs = Vec::new();
    for _ in 0..3 {
        subs.push(
            t.subscriber(&topic, &group)
                .await
                .map_err(fail("subscriber"))?,
        );
    }
    let publisher = t.publisher().await.map_err(fail("publisher"))?;
    let sent = numbered(n, 20);
    let ids: Vec<_> = sent.iter().map(Message::id).collect();
    let results = publisher.publish_batch(&topic, sent).await;
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        return Err(format!("publish failed: {e}"));
    }
    let seen = drain_together(subs, n, scale.case_timeout).await?;
    if let Some(unknown) = seen.ids().find(|id| !ids.contains(id)) {
        return Err(format!("unexpected message {unknown}"));
    }
    check_shared_if_prompt(t, &seen)
}

/// Checks that the members shared the work, where the backend re-splits it promptly.
fn check_shared_if_prompt(
    t: &dyn ConformanceTarget,
    seen: &super::group_drain::GroupDrain,
) -> Result<(), String> {
    if t.capabilities().prompt_rebalance {
        seen.check_shared()
    } else {
        Ok(())
    }
}

async fn many_publishers_and_subscribers_lose_nothing(
    t: &dyn ConformanceTarget,
) -> Result<(), String> {
    let scale = t.scale();
    let topic = topic(t, "many").await?;
    let group = unique("g");
    let mut subs = Vec::new();
    for _ in 0..scale.subscribers {
        subs.push(
            t.subscriber(&topic, &group)
                .await
                .map_err(fail("subscriber"))?,
        );
    }
    let mut publishers = Vec::new();
    for _ in 0..scale.publishers {
        publishers.push(t.publisher().await.map_err(fail("publisher"))?);
    }
    let total = scale.publishers * scale.messages_per_publisher;
    let publishing = publishers.into_iter().map(|p| {
        let topic = topic.clone();
        async move {
            let sent = numbered(scale.messages_per_publisher, 10);
            let ids: Vec<_> = sent.iter().map(Message::id).collect();
            publish_all(p.as_ref(), &topic, sent).await.map(|_| ids)
        }
    });
    let consuming = drain_together(subs, total, scale.case_timeout);
    let (published, seen) = tokio::join!(join_all(publishing), consuming);
    let mut ids = Vec::with_capacity(total);
    for p in published {
        ids.extend(p?);
    }
    let seen = seen?;
    let lost = ids.iter().filter(|id| !seen.contains(id)).count();
    if lost > 0 || seen.distinct() != total {
        return Err(format!(
            "{lost} of {total} lost, {} distinct seen",
            seen.distinct()
        ));
    }
    check_shared_if_prompt(t, &seen)
}

async fn independent_groups_each_get_everything(t: &dyn ConformanceTarget) -> Result<(), String> {
    let scale = t.scale();
    let n = scale.messages;
    let topic = topic(t, "groups").await?;
    let mut a = t
        .subscriber(&topic, &unique("ga"))
        .await
        .map_err(fail("subscriber a"))?;
    let mut b = t
        .subscriber(&topic, &unique("gb"))
        .await
        .map_err(fail("subscriber b"))?;
    let publisher = t.publisher().await.map_err(fail("publisher"))?;
    let sent = numbered(n, 4);
    let ids: Vec<_> = sent.iter().map(Message::id).collect();
    publish_all(publisher.as_ref(), &topic, sent).await?;
    let (got_a, got_b) = tokio::join!(
        receive_acked(a.as_mut(), n, scale.case_timeout),
        receive_acked(b.as_mut(), n, scale.case_timeout)
    );
    same_ids(&ids, &got_a?).map_err(|e| format!("group a: {e}"))?;
    same_ids(&ids, &got_b?).map_err(|e| format!("group b: {e}"))
}

async fn close_and_reopen_midstream_loses_nothing(t: &dyn ConformanceTarget) -> Result<(), String> {
    let scale = t.scale();
    let n = scale.messages;
    let (topic, group, publisher) = setup(t, "reopen").await?;
    let mut first = t
        .subscriber(&topic, &group)
        .await
        .map_err(fail("subscriber"))?;
    let sent = numbered(n, 4);
    let ids: Vec<_> = sent.iter().map(Message::id).collect();
    publish_all(publisher.as_ref(), &topic, sent).await?;
    let half = receive_acked(first.as_mut(), n / 2, scale.case_timeout).await?;
    first.close().await.map_err(fail("close"))?;
    drop(first);
    let mut second = t.subscriber(&topic, &group).await.map_err(fail("reopen"))?;
    // At-least-once: an ack racing the close may be lost and its message delivered again.
    // What must not happen is a loss.
    let mut seen: HashMap<MessageId, usize> = HashMap::new();
    for m in &half {
        *seen.entry(m.message().id()).or_default() += 1;
    }
    let deadline = Instant::now() + scale.case_timeout;
    while ids.iter().any(|id| !seen.contains_key(id)) {
        let d = next(second.as_mut(), deadline).await.map_err(|e| {
            let missing = ids.iter().filter(|id| !seen.contains_key(id)).count();
            format!("{missing} of {n} messages never arrived after reopening: {e}")
        })?;
        *seen.entry(d.message().message().id()).or_default() += 1;
        d.ack().await.map_err(fail("ack"))?;
    }
    if let Some(unknown) = seen.keys().find(|id| !ids.contains(id)) {
        return Err(format!("unexpected message {unknown}"));
    }
    expect_quiet(second.as_mut(), scale.quiet_period).await
}

async fn closed_subscriber_ends_its_stream(t: &dyn ConformanceTarget) -> Result<(), String> {
    let topic = topic(t, "closesub").await?;
    let mut sub = t
        .subscriber(&topic, &unique("g"))
        .await
        .map_err(fail("subscriber"))?;
    sub.close().await.map_err(fail("close"))?;
    sub.close().await.map_err(fail("second close"))?;
    match next(sub.as_mut(), Instant::now() + t.scale().quiet_period).await {
        Err(e) if e.contains("ended") => Ok(()),
        Err(e) => Err(format!(
            "receive after close should return None at once: {e}"
        )),
        Ok(_) => Err("a closed subscriber delivered a message".to_owned()),
    }
}
