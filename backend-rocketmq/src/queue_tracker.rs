//! Which message queues the consumer holds, per subscribed topic, so that acknowledgements of
//! a queue it lost never commit offsets for the queue's new owner.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use rocketmq_client_rust::MessageQueueListener;
use rocketmq_model::common::message::message_queue::MessageQueue;
use waybill_core::backend_kit::InFlightOffsets;

/// Follows the queues each rebalance gives and takes, topic by topic.
///
/// The client keeps one listener per consumer (each `subscribe_with_listener` replaces the
/// previous one) and calls it with one topic's assignment at a time, so the tracker diffs
/// each call against what it holds *of that topic*; clones share the state.
#[derive(Clone)]
pub(crate) struct QueueTracker {
    offsets: Arc<InFlightOffsets<MessageQueue>>,
    held: Arc<Mutex<HashMap<String, HashSet<MessageQueue>>>>,
}

impl QueueTracker {
    pub fn new(offsets: Arc<InFlightOffsets<MessageQueue>>) -> Self {
        Self {
            offsets,
            held: Arc::default(),
        }
    }
}

impl MessageQueueListener for QueueTracker {
    fn message_queue_changed(
        &self,
        topic: &str,
        _all: &HashSet<MessageQueue>,
        assigned: &HashSet<MessageQueue>,
    ) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let of_topic = held.entry(topic.to_owned()).or_default();
        for lost in of_topic.difference(assigned) {
            self.offsets.revoked(lost);
        }
        for gained in assigned.difference(of_topic) {
            self.offsets.assigned(gained);
        }
        *of_topic = assigned.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queues(topic: &str) -> HashSet<MessageQueue> {
        (0..2)
            .map(|id| MessageQueue::from_parts(topic, "broker-a", id))
            .collect()
    }

    /// The client calls its one listener with each topic's assignment in turn (the main topic,
    /// then the retry topic, at every rebalance that changed something): the retry topic's
    /// assignment must not take the main topic's queues away.
    #[test]
    fn an_assignment_of_one_topic_leaves_the_others_held() {
        let offsets = Arc::new(InFlightOffsets::default());
        let tracker = QueueTracker::new(Arc::clone(&offsets));
        let (main, retry) = (queues("orders"), queues("orders_billing_RETRY"));
        tracker.message_queue_changed("orders", &main, &main);
        let queue = main.iter().next().unwrap().clone();
        let delivered = offsets.received(&queue, 41);
        tracker.message_queue_changed("orders_billing_RETRY", &retry, &retry);
        assert!(
            offsets.holds(&queue),
            "the main topic's queue is still held"
        );
        assert_eq!(
            offsets.completed(&delivered),
            Some(42),
            "its acknowledgement commits"
        );
        // A later rebalance that takes the queue away does end its acknowledgements.
        let rest: HashSet<MessageQueue> = main.iter().filter(|q| **q != queue).cloned().collect();
        let again = offsets.received(&queue, 42);
        tracker.message_queue_changed("orders", &main, &rest);
        assert!(!offsets.holds(&queue));
        assert_eq!(offsets.completed(&again), None);
        assert!(
            offsets.holds(retry.iter().next().unwrap()),
            "the retry topic's queues stay"
        );
    }
}
