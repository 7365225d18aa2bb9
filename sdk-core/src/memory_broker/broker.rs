//! The in-memory broker: topics, their logs and their consumer groups.

use std::sync::{Arc, Mutex};

use super::faults::FaultInjector;
use super::group_queue::{Entry, GroupQueue};
use super::publisher::MemoryPublisher;
use super::subscriber::MemorySubscriber;
use crate::config_error::{validate_name, ConfigError};
use crate::message::Message;

/// A broker living in this process, for unit tests, demos and users' own tests.
///
/// Semantics: a topic is an append-only log; each consumer group gets every message of the topic
/// (a group created later starts from the beginning of the log); subscribers of the same group
/// compete for messages. A message delivered but not settled is delivered again when its
/// delivery is dropped or its subscriber closes. Dead letters go to the topic `<topic>.dlq`.
/// Nothing survives the process: it is not a production broker.
///
/// Faults are injected through [`MemoryBroker::faults`].
#[derive(Clone, Default)]
pub struct MemoryBroker {
    pub(crate) state: Arc<BrokerState>,
}

pub(crate) struct BrokerState {
    topics: Mutex<foldhash::HashMap<String, Topic>>,
    pub faults: FaultInjector,
    pub auto_create_topics: bool,
    pub max_message_bytes: usize,
}

impl Default for BrokerState {
    fn default() -> Self {
        Self {
            topics: Mutex::new(foldhash::HashMap::default()),
            faults: FaultInjector::default(),
            auto_create_topics: true,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

#[derive(Default)]
struct Topic {
    log: Vec<Message>,
    groups: foldhash::HashMap<String, Arc<GroupQueue>>,
}

/// Largest message (payload plus headers) the broker accepts by default: 1 MiB, as Kafka.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Why the broker refused to append.
pub(crate) enum AppendError {
    UnknownTopic,
}

impl MemoryBroker {
    /// A broker that creates topics on first use and accepts messages up to 1 MiB.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder for non-default settings.
    pub fn builder() -> MemoryBrokerBuilder {
        MemoryBrokerBuilder {
            auto_create_topics: true,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }

    /// The topic that receives dead letters of `topic`.
    pub fn dead_letter_topic(topic: &str) -> String {
        format!("{topic}.dlq")
    }

    /// Creates `topic` (and its dead-letter topic) if missing.
    ///
    /// # Errors
    /// [`ConfigError`] for the field `topic` when the name is unusable.
    pub fn create_topic(&self, topic: &str) -> Result<(), ConfigError> {
        validate_name("topic", topic)?;
        let mut topics = self.state.lock_topics();
        topics.entry(topic.to_owned()).or_default();
        topics.entry(Self::dead_letter_topic(topic)).or_default();
        Ok(())
    }

    /// A publisher. Publishers are cheap; each can be closed independently.
    pub fn publisher(&self) -> MemoryPublisher {
        MemoryPublisher::new(Arc::clone(&self.state))
    }

    /// A subscriber of `topic` in consumer group `group`. The group is created on first use and
    /// starts from the beginning of the topic.
    ///
    /// # Errors
    /// [`ConfigError`] for `topic` or `group` when a name is unusable, or for `topic` when it does
    /// not exist and topic auto-creation is off.
    pub fn subscriber(&self, topic: &str, group: &str) -> Result<MemorySubscriber, ConfigError> {
        validate_name("topic", topic)?;
        validate_name("group", group)?;
        let queue = {
            let mut topics = self.state.lock_topics();
            if !topics.contains_key(topic) {
                if !self.state.auto_create_topics {
                    return Err(ConfigError::new(
                        "topic",
                        format!("unknown topic {topic:?} (topic auto-creation is off)"),
                    ));
                }
                topics.insert(topic.to_owned(), Topic::default());
            }
            let entry = topics.get_mut(topic).expect("present");
            let log = &entry.log;
            Arc::clone(entry.groups.entry(group.to_owned()).or_insert_with(|| {
                let backlog = log.iter().enumerate().map(|(offset, message)| Entry {
                    message: message.clone(),
                    offset: offset as u64,
                    redelivered: false,
                    fault_applied: false,
                });
                Arc::new(GroupQueue::new(topic.to_owned(), group.to_owned(), backlog))
            }))
        };
        Ok(MemorySubscriber::new(queue, Arc::clone(&self.state)))
    }

    /// The fault hooks.
    pub fn faults(&self) -> &FaultInjector {
        &self.state.faults
    }

    /// Every message ever stored in `topic`, in order (empty for an unknown topic).
    pub fn messages(&self, topic: &str) -> Vec<Message> {
        self.state
            .lock_topics()
            .get(topic)
            .map(|t| t.log.clone())
            .unwrap_or_default()
    }

    /// Messages of `topic` that `group` has not acknowledged yet (ready, delayed or in flight);
    /// 0 for an unknown topic or group.
    pub fn pending(&self, topic: &str, group: &str) -> usize {
        let queue = self
            .state
            .lock_topics()
            .get(topic)
            .and_then(|t| t.groups.get(group).cloned());
        queue.map_or(0, |q| q.pending())
    }
}

impl BrokerState {
    fn lock_topics(&self) -> std::sync::MutexGuard<'_, foldhash::HashMap<String, Topic>> {
        // Appends and inserts only: consistent even after a panic elsewhere.
        self.topics.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends to the log and to every group's queue; returns the offset.
    pub fn append(&self, topic: &str, message: Message) -> Result<u64, AppendError> {
        let mut topics = self.lock_topics();
        if !topics.contains_key(topic) {
            if !self.auto_create_topics {
                return Err(AppendError::UnknownTopic);
            }
            topics.insert(topic.to_owned(), Topic::default());
        }
        let entry = topics.get_mut(topic).expect("present");
        let offset = entry.log.len() as u64;
        for queue in entry.groups.values() {
            queue.push(Entry {
                message: message.clone(),
                offset,
                redelivered: false,
                fault_applied: false,
            });
        }
        entry.log.push(message);
        Ok(offset)
    }
}

/// Builds a [`MemoryBroker`] with non-default settings.
#[derive(Clone, Debug)]
pub struct MemoryBrokerBuilder {
    auto_create_topics: bool,
    max_message_bytes: usize,
}

impl MemoryBrokerBuilder {
    /// Whether publishing to or subscribing to an unknown topic creates it (default true).
    pub fn auto_create_topics(mut self, on: bool) -> Self {
        self.auto_create_topics = on;
        self
    }

    /// Largest accepted message, payload plus headers (default 1 MiB).
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// Validates and returns the broker.
    ///
    /// # Errors
    /// [`ConfigError`] for `max_message_bytes` when zero.
    pub fn build(self) -> Result<MemoryBroker, ConfigError> {
        if self.max_message_bytes == 0 {
            return Err(ConfigError::new(
                "max_message_bytes",
                "must be greater than zero",
            ));
        }
        Ok(MemoryBroker {
            state: Arc::new(BrokerState {
                auto_create_topics: self.auto_create_topics,
                max_message_bytes: self.max_message_bytes,
                ..BrokerState::default()
            }),
        })
    }
}
