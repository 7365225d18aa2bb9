//! Small pieces the cases share.

use std::fmt::Display;
use std::time::Duration;

use tokio::time::Instant;

use super::ConformanceTarget;
use crate::incoming::IncomingMessage;
use crate::message::Message;
use crate::message_id::MessageId;
use crate::publisher::Publisher;
use crate::receipt::Receipt;
use crate::subscriber::Subscriber;

/// Header carrying a message's sequence number within a case.
pub const SEQ: &str = "conformance-seq";

/// A fresh name for a case's topic or group.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("wb-{prefix}-{}", &id[..10])
}

/// Maps any error into a case failure with context.
pub fn fail<E: Display>(context: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{context}: {e}")
}

/// A fresh, prepared topic.
pub async fn topic(target: &dyn ConformanceTarget, case: &str) -> Result<String, String> {
    let topic = unique(case);
    target
        .prepare_topic(&topic)
        .await
        .map_err(fail("prepare_topic"))?;
    Ok(topic)
}

/// A fresh prepared topic, a fresh group name and a publisher: what most cases start from.
pub async fn setup(
    target: &dyn ConformanceTarget,
    case: &str,
) -> Result<(String, String, std::sync::Arc<dyn Publisher>), String> {
    let topic = topic(target, case).await?;
    let publisher = target.publisher().await.map_err(fail("publisher"))?;
    Ok((topic, unique("g"), publisher))
}

/// `n` messages with sequence headers, spread over `keys` keys (no key when `keys` is 0).
pub fn numbered(n: usize, keys: usize) -> Vec<Message> {
    (0..n)
        .map(|i| {
            let m = Message::new(format!("payload-{i}")).with_header(SEQ, i.to_string());
            if keys == 0 {
                m
            } else {
                m.with_key(format!("key-{}", i % keys))
            }
        })
        .collect()
}

/// The sequence number a message carries.
pub fn seq_of(message: &Message) -> Option<u64> {
    message.headers().get(SEQ)?.parse().ok()
}

/// Publishes one by one (each confirmed before the next), failing the case on any error.
pub async fn publish_all(
    publisher: &dyn Publisher,
    topic: &str,
    messages: Vec<Message>,
) -> Result<Vec<Receipt>, String> {
    let mut receipts = Vec::with_capacity(messages.len());
    for m in messages {
        receipts.push(publisher.publish(topic, m).await.map_err(fail("publish"))?);
    }
    Ok(receipts)
}

/// Receives `n` deliveries within `within`, acknowledging each.
pub async fn receive_acked(
    subscriber: &mut dyn Subscriber,
    n: usize,
    within: Duration,
) -> Result<Vec<IncomingMessage>, String> {
    let deadline = Instant::now() + within;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let delivery = next(subscriber, deadline)
            .await
            .map_err(|e| format!("after {} of {n} messages: {e}", out.len()))?;
        out.push(delivery.message().clone());
        delivery.ack().await.map_err(fail("ack"))?;
    }
    Ok(out)
}

/// The next delivery before `deadline`.
pub async fn next(
    subscriber: &mut dyn Subscriber,
    deadline: Instant,
) -> Result<crate::delivery::Delivery, String> {
    match tokio::time::timeout_at(deadline, subscriber.receive()).await {
        Err(_) => Err("timed out waiting for a delivery".to_owned()),
        Ok(Err(e)) => Err(format!("receive failed: {e}")),
        Ok(Ok(None)) => Err("subscription ended unexpectedly".to_owned()),
        Ok(Ok(Some(d))) => Ok(d),
    }
}

/// Fails if anything is delivered within `period`.
pub async fn expect_quiet(subscriber: &mut dyn Subscriber, period: Duration) -> Result<(), String> {
    match tokio::time::timeout(period, subscriber.receive()).await {
        Err(_) => Ok(()),
        Ok(Ok(None)) => Ok(()),
        Ok(Err(e)) => Err(format!("receive failed: {e}")),
        Ok(Ok(Some(d))) => Err(format!(
            "unexpected delivery of {} (seq {:?})",
            d.message().message().id(),
            seq_of(d.message().message())
        )),
    }
}

/// Checks that `got` holds exactly the ids of `sent`, each once.
pub fn same_ids(sent: &[MessageId], got: &[IncomingMessage]) -> Result<(), String> {
    let mut want: Vec<_> = sent.to_vec();
    let mut have: Vec<_> = got.iter().map(|m| m.message().id()).collect();
    want.sort();
    have.sort();
    if want == have {
        return Ok(());
    }
    let missing = want.iter().filter(|id| !have.contains(id)).count();
    let extra = have.len() as isize - (want.len() as isize - missing as isize);
    Err(format!(
        "expected {} messages, got {}: {missing} missing, {extra} unexpected or duplicated",
        want.len(),
        have.len()
    ))
}

/// Polls `done` every 10 ms until it holds or `within` passes.
pub async fn wait_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}
