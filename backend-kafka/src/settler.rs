//! Settling Kafka deliveries: store the offset, retry through the retry topic, dead letter.

use std::sync::Arc;

use async_trait::async_trait;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc::UnboundedSender;
use waybill_core::{
    BrokerError, FailureClass, IncomingMessage, Message, PublishOutcome, Publisher, Settle,
    Settlement,
};

use crate::offsets::{Offsets, Position};
use crate::publisher::KafkaPublisher;
use crate::subscriber::TrackingContext;

/// What the settlements of one subscriber share.
pub(crate) struct SettleLink {
    pub consumer: Arc<StreamConsumer<TrackingContext>>,
    pub offsets: Arc<Offsets>,
    pub publisher: Arc<KafkaPublisher>,
    /// Retry and dead-letter topics; `None` for a dead-letter reader, which can only ack.
    pub retry_topic: Option<String>,
    pub dead_letter_topic: Option<String>,
    /// Abandoned deliveries go back to the subscriber, which delivers them again.
    pub redeliver: UnboundedSender<(IncomingMessage, Position)>,
}

impl SettleLink {
    /// Marks `position` done and stores the committable offset of its partition.
    fn complete(&self, position: &Position) {
        let Some(next) = self.offsets.completed(position) else {
            return; // The partition was reassigned: its new owner reads from the committed offset.
        };
        let mut tpl = TopicPartitionList::new();
        if tpl
            .add_partition_offset(&position.topic, position.partition, Offset::Offset(next))
            .is_ok()
        {
            if let Err(e) = self.consumer.store_offsets(&tpl) {
                tracing::debug!(error = %e, "offset not stored (partition no longer assigned)");
            }
        }
    }

    async fn publish_copy(
        &self,
        operation: &'static str,
        topic: Option<&str>,
        copy: Message,
    ) -> Result<(), BrokerError> {
        let topic = topic.ok_or_else(|| {
            BrokerError::permanent(operation, "a dead-letter reader can only acknowledge")
        })?;
        self.publisher
            .publish(topic, copy)
            .await
            .map(|_| ())
            .map_err(|e| {
                let class = match e.outcome() {
                    PublishOutcome::Permanent => FailureClass::Permanent,
                    PublishOutcome::NotSent | PublishOutcome::Ambiguous => FailureClass::Transient,
                };
                BrokerError::new(class, operation, e.to_string())
            })
    }
}

/// Settles one delivery; dropped unsettled, it hands the message back to its subscriber.
pub(crate) struct KafkaSettler {
    link: Arc<SettleLink>,
    pending: Option<(IncomingMessage, Position)>,
}

impl KafkaSettler {
    pub fn new(link: Arc<SettleLink>, incoming: IncomingMessage, position: Position) -> Self {
        Self {
            link,
            pending: Some((incoming, position)),
        }
    }
}

#[async_trait]
impl Settle for KafkaSettler {
    async fn settle(
        mut self: Box<Self>,
        incoming: &IncomingMessage,
        settlement: Settlement,
    ) -> Result<(), BrokerError> {
        match settlement {
            Settlement::Ack => {}
            Settlement::Retry(request) => {
                let mut copy = incoming.message().clone();
                request.apply_to(copy.headers_mut());
                let topic = self.link.retry_topic.clone();
                self.link
                    .publish_copy("retry", topic.as_deref(), copy)
                    .await?;
            }
            Settlement::DeadLetter(record) => {
                let mut copy = incoming.message().clone();
                record.write_to(copy.headers_mut());
                let topic = self.link.dead_letter_topic.clone();
                self.link
                    .publish_copy("dead-letter", topic.as_deref(), copy)
                    .await?;
            }
        }
        let (_, position) = self.pending.take().expect("settled once");
        self.link.complete(&position);
        Ok(())
    }
}

impl Drop for KafkaSettler {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            // Its offset stays in flight; the subscriber delivers it again.
            let _ = self.link.redeliver.send(pending);
        }
    }
}
