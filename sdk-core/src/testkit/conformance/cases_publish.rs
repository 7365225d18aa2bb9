//! Cases about publishing: confirms, batches, round trips, isolation, close.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::join_all;

use super::support::{
    fail, numbered, publish_all, receive_acked, same_ids, topic, unique, wait_until,
};
use super::{case, Case, ConformanceTarget};
use crate::message::Message;
use crate::publish_error::PublishOutcome;
use crate::wire_time;

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(publish_is_confirmed_and_delivered),
        case!(id_key_payload_and_headers_round_trip),
        case!(publish_batch_confirms_each_message),
        case!(topics_are_isolated),
        case!(publisher_close_after_concurrent_publishes_loses_nothing),
        case!(publish_after_close_hands_the_message_back),
    ]
}

async fn publish_is_confirmed_and_delivered(t: &dyn ConformanceTarget) -> Result<(), String> {
    let topic = topic(t, "confirm").await?;
    let group = unique("g");
    let mut sub = t
        .subscriber(&topic, &group)
        .await
        .map_err(fail("subscriber"))?;
    if sub.group() != Some(group.as_str()) {
        return Err(format!(
            "the subscriber names group {:?}, not the {group:?} it joined (Processor::for_subscriber \
             would scope claims wrongly)",
            sub.group()
        ));
    }
    let publisher = t.publisher().await.map_err(fail("publisher"))?;
    let message = Message::new("hello").with_key("k");
    let id = message.id();
    let receipt = publisher
        .publish(&topic, message)
        .await
        .map_err(fail("publish"))?;
    if receipt.message_id != id || receipt.topic != topic {
        return Err(format!(
            "receipt {receipt:?} does not name message {id} on {topic}"
        ));
    }
    let got = receive_acked(sub.as_mut(), 1, t.scale().case_timeout).await?;
    same_ids(&[id], &got)
}

async fn id_key_payload_and_headers_round_trip(t: &dyn ConformanceTarget) -> Result<(), String> {
    let n = t.scale().messages;
    let topic = topic(t, "roundtrip").await?;
    let mut sub = t
        .subscriber(&topic, &unique("g"))
        .await
        .map_err(fail("subscriber"))?;
    let publisher = t.publisher().await.map_err(fail("publisher"))?;
    let sent: Vec<Message> = (0..n)
        .map(|i| {
            let mut payload = vec![0u8, 0xff, 0xfe, b'\n'];
            payload.extend_from_slice(format!("body-{i}-ü").as_bytes());
            Message::new(Bytes::from(payload))
                .with_key(format!("key-{}", i % 7))
                .with_header("x-seq", i.to_string())
                .with_header("x-text", "ümlaut, spaces and = signs")
        })
        .collect();
    publish_all(publisher.as_ref(), &topic, sent.clone()).await?;
    let got = receive_acked(sub.as_mut(), n, t.scale().case_timeout).await?;
    for received in &got {
        let r = received.message();
        let s = sent
            .iter()
            .find(|s| s.id() == r.id())
            .ok_or_else(|| format!("received unknown id {}", r.id()))?;
        if r.key() != s.key() || r.payload() != s.payload() {
            return Err(format!(
                "message {} changed key or payload in transit",
                r.id()
            ));
        }
        for (name, value) in s.headers().iter() {
            if r.headers().get(name) != Some(value) {
                return Err(format!("message {} lost or changed header {name}", r.id()));
            }
        }
        let millis = |m: &Message| wire_time::format_millis(m.created_at());
        if millis(r) != millis(s) {
            return Err(format!("message {} changed its creation time", r.id()));
        }
    }
    same_ids(&sent.iter().map(Message::id).collect::<Vec<_>>(), &got)
}

async fn publish_batch_confirms_each_message(t: &dyn ConformanceTarget) -> Result<(), String> {
    let n = t.scale().messages * 2;
    let topic = topic(t, "batch").await?;
    let mut sub = t
        .subscriber(&topic, &unique("g"))
        .await
        .map_err(fail("subscriber"))?;
    let publisher = t.publisher().await.map_err(fail("publisher"))?;
    let sent = numbered(n, 10);
    let ids: Vec<_> = sent.iter().map(Message::id).collect();
    let results = publisher.publish_batch(&topic, sent).await;
    if results.len() != n {
        return Err(format!("{} results for {n} messages", results.len()));
    }
    for (i, result) in results.iter().enumerate() {
        match result {
            Ok(r) if r.message_id == ids[i] => {}
            Ok(r) => {
                return Err(format!(
                    "result {i} names {} instead of {}",
                    r.message_id, ids[i]
                ))
            }
            Err(e) => return Err(format!("message {i} not confirmed: {e}")),
        }
    }
    let got = receive_acked(sub.as_mut(), n, t.scale().case_timeout).await?;
    same_ids(&ids, &got)
}

async fn topics_are_isolated(t: &dyn ConformanceTarget) -> Result<(), String> {
    let per_topic = 10;
    let publisher = t.publisher().await.map_err(fail("publisher"))?;
    let mut topics = Vec::new();
    for _ in 0..t.scale().topics {
        let name = topic(t, "iso").await?;
        let sub = t
            .subscriber(&name, &unique("g"))
            .await
            .map_err(fail("subscriber"))?;
        topics.push((name, sub));
    }
    let checks = topics.into_iter().map(|(name, mut sub)| {
        let publisher = Arc::clone(&publisher);
        async move {
            let sent = numbered(per_topic, 3);
            let ids: Vec<_> = sent.iter().map(Message::id).collect();
            publish_all(publisher.as_ref(), &name, sent).await?;
            let got = receive_acked(sub.as_mut(), per_topic, t.scale().case_timeout).await?;
            same_ids(&ids, &got).map_err(|e| format!("topic {name}: {e}"))?;
            super::support::expect_quiet(sub.as_mut(), t.scale().quiet_period).await
        }
    });
    join_all(checks).await.into_iter().collect()
}

async fn publisher_close_after_concurrent_publishes_loses_nothing(
    t: &dyn ConformanceTarget,
) -> Result<(), String> {
    let n = t.scale().messages * 2;
    let topic = topic(t, "pubclose").await?;
    let mut sub = t
        .subscriber(&topic, &unique("g"))
        .await
        .map_err(fail("subscriber"))?;
    let publisher = t.publisher().await.map_err(fail("publisher"))?;
    let sent = numbered(n, 10);
    let all_ids: HashSet<_> = sent.iter().map(Message::id).collect();
    let finished = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = sent
        .into_iter()
        .map(|m| {
            let (publisher, finished) = (Arc::clone(&publisher), Arc::clone(&finished));
            let topic = topic.clone();
            tokio::spawn(async move {
                let result = publisher.publish(&topic, m).await;
                finished.fetch_add(1, Ordering::SeqCst);
                result
            })
        })
        .collect();
    // Close once the first publish finished, while the others are in flight.
    wait_until(t.scale().case_timeout, || {
        finished.load(Ordering::SeqCst) > 0
    })
    .await;
    publisher.close().await.map_err(fail("close"))?;
    let mut confirmed = HashSet::new();
    for task in tasks {
        match task.await.map_err(fail("publish task"))? {
            Ok(receipt) => {
                confirmed.insert(receipt.message_id);
            }
            Err(e) => {
                if !all_ids.contains(&e.message().id()) {
                    return Err("a failed publish handed back a different message".to_owned());
                }
            }
        }
    }
    if confirmed.is_empty() {
        return Err("no publish was confirmed before close".to_owned());
    }
    // Every confirmed message must arrive; ambiguous ones may.
    let deadline = tokio::time::Instant::now() + t.scale().case_timeout;
    let mut seen = HashSet::new();
    while !confirmed.is_subset(&seen) {
        let d = super::support::next(sub.as_mut(), deadline)
            .await
            .map_err(|e| {
                format!(
                    "{} of {} confirmed messages arrived: {e}",
                    seen.len(),
                    confirmed.len()
                )
            })?;
        seen.insert(d.message().message().id());
        d.ack().await.map_err(fail("ack"))?;
    }
    Ok(())
}

async fn publish_after_close_hands_the_message_back(
    t: &dyn ConformanceTarget,
) -> Result<(), String> {
    let topic = topic(t, "closed").await?;
    let publisher = t.publisher().await.map_err(fail("publisher"))?;
    publisher.close().await.map_err(fail("close"))?;
    publisher.close().await.map_err(fail("second close"))?;
    let message = Message::new("late");
    let id = message.id();
    match publisher.publish(&topic, message).await {
        Ok(_) => Err("publish after close was confirmed".to_owned()),
        Err(e) if e.message().id() != id => Err("error handed back another message".to_owned()),
        Err(e) if e.outcome() != PublishOutcome::NotSent => Err(format!(
            "publish after close should be NotSent, was {}",
            e.outcome()
        )),
        Err(_) => Ok(()),
    }
}
