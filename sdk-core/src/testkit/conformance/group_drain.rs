//! Draining one topic with every member of a consumer group at once, and checking that the
//! members shared the work.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use tokio::time::Instant;

use super::support::fail;
use crate::message_id::MessageId;
use crate::subscriber::Subscriber;

/// Share of the distinct messages that may reach the group more than once: a member may lose
/// its part of the topic in a rebalance before its acknowledgements took effect, and the
/// member that takes over gets those messages again (at-least-once). A group whose members
/// each get every message exceeds it many times over.
const REDELIVERY_ALLOWANCE_PERCENT: usize = 10;

/// Which members of a group received which messages.
#[derive(Debug, Default)]
pub struct GroupDrain {
    /// For each message, the member (its index) of every delivery, in arrival order.
    receivers: HashMap<MessageId, Vec<usize>>,
    /// Deliveries each member received.
    per_member: Vec<usize>,
}

impl GroupDrain {
    /// Distinct messages received.
    pub fn distinct(&self) -> usize {
        self.receivers.len()
    }

    /// Whether `id` was received at least once.
    pub fn contains(&self, id: &MessageId) -> bool {
        self.receivers.contains_key(id)
    }

    /// Every distinct message received.
    pub fn ids(&self) -> impl Iterator<Item = &MessageId> {
        self.receivers.keys()
    }

    /// Checks that the members shared the work: each message went to one member (apart from
    /// at most [`REDELIVERY_ALLOWANCE_PERCENT`] % redeliveries). How the messages spread over
    /// the members is not checked: on a broker whose group join takes seconds (Kafka), the
    /// first member may drain a small topic before the others are assigned any of it.
    pub fn check_shared(&self) -> Result<(), String> {
        let deliveries: usize = self.per_member.iter().sum();
        let extra = deliveries - self.distinct();
        let to_several = self
            .receivers
            .values()
            .filter(|members| members.iter().any(|m| *m != members[0]))
            .count();
        if extra * 100 > self.distinct() * REDELIVERY_ALLOWANCE_PERCENT {
            return Err(format!(
                "{deliveries} deliveries of {} messages ({to_several} of them to more than one \
                 member; deliveries per member {:?}): each message must go to one member of \
                 the group, redeliveries allowed for at most {REDELIVERY_ALLOWANCE_PERCENT} %",
                self.distinct(),
                self.per_member
            ));
        }
        Ok(())
    }
}

/// Consumes with every subscriber at once, acknowledging each delivery, until `expected`
/// distinct ids were seen; fails if that takes longer than `within`. Each member yields after
/// each message, as a member doing work would, so that every member gets its chance.
pub async fn drain_together(
    subscribers: Vec<Box<dyn Subscriber>>,
    expected: usize,
    within: Duration,
) -> Result<GroupDrain, String> {
    let drain = Arc::new(Mutex::new(GroupDrain {
        receivers: HashMap::new(),
        per_member: vec![0; subscribers.len()],
    }));
    let deadline = Instant::now() + within;
    let workers = subscribers
        .into_iter()
        .enumerate()
        .map(|(member, mut sub)| {
            let drain = Arc::clone(&drain);
            async move {
                loop {
                    if drain.lock().unwrap().distinct() >= expected {
                        return Ok(());
                    }
                    let wait = (Instant::now() + Duration::from_millis(200)).min(deadline);
                    match tokio::time::timeout_at(wait, sub.receive()).await {
                        Err(_) if Instant::now() >= deadline => return Err("timed out".to_owned()),
                        Err(_) => continue,
                        Ok(Err(e)) => return Err(format!("receive failed: {e}")),
                        Ok(Ok(None)) => return Err("subscription ended".to_owned()),
                        Ok(Ok(Some(d))) => {
                            {
                                let mut drain = drain.lock().unwrap();
                                drain
                                    .receivers
                                    .entry(d.message().message().id())
                                    .or_default()
                                    .push(member);
                                drain.per_member[member] += 1;
                            }
                            d.ack().await.map_err(fail("ack"))?;
                            tokio::task::yield_now().await;
                        }
                    }
                }
            }
        });
    let results: Vec<Result<(), String>> = join_all(workers).await;
    let drain = std::mem::take(&mut *drain.lock().unwrap());
    if drain.distinct() < expected {
        let why = results
            .into_iter()
            .find_map(Result::err)
            .unwrap_or_default();
        return Err(format!(
            "{} of {expected} messages arrived: {why}",
            drain.distinct()
        ));
    }
    Ok(drain)
}
