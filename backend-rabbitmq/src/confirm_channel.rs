//! A confirm-mode channel that reopens itself, and the one-message confirmed publish.

use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, LongString};
use lapin::{BasicProperties, Channel, Connection, ErrorKind};
use lapin::{Confirmation, PublisherConfirm};
use waybill_core::{Headers, Message, PublishOutcome};

use crate::error_class::{confirm_outcome, describe};
use crate::wire;

/// A channel in confirm mode, reopened when the broker closed it (after a 404, say).
#[derive(Default)]
pub(crate) struct ConfirmChannel {
    channel: Option<Channel>,
    published: u64,
}

impl ConfirmChannel {
    /// The open channel, reopening it on `connection` if needed.
    pub async fn open(&mut self, connection: &Connection) -> Result<&Channel, lapin::Error> {
        let usable = self
            .channel
            .as_ref()
            .is_some_and(|c| c.status().connected());
        if !usable {
            self.channel = None;
            let channel = connection.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            self.channel = Some(channel);
            self.published = 0;
        }
        Ok(self.channel.as_ref().expect("set above"))
    }

    /// Drops the channel after a failed or timed-out confirm: a confirm still pending on it
    /// could otherwise pick up a later publish's returned message.
    pub fn discard(&mut self) {
        if let Some(channel) = self.channel.take() {
            tokio::spawn(async move {
                let _ = channel.close(200, "discarded".into()).await;
            });
        }
    }

    /// Counts a publish and returns its delivery tag (1-based per channel, as the broker's).
    pub fn next_tag(&mut self) -> u64 {
        self.published += 1;
        self.published
    }
}

/// Why a confirmed publish failed.
pub(crate) struct Refusal {
    pub outcome: PublishOutcome,
    pub reason: String,
    pub source: Option<lapin::Error>,
}

impl Refusal {
    fn new(outcome: PublishOutcome, reason: impl Into<String>) -> Self {
        Self {
            outcome,
            reason: reason.into(),
            source: None,
        }
    }
}

/// Sends `message` (mandatory, persistent) without waiting for the confirm.
pub(crate) async fn send(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    message: &Message,
    extra: Option<&Headers>,
) -> Result<PublisherConfirm, Refusal> {
    let properties = wire::properties(message, extra);
    send_with(channel, exchange, routing_key, message, properties).await
}

/// Sends `message` (mandatory, persistent) to `queue` alone, through the default exchange,
/// while its routing key stays `routing_key`: the queue is named in the message's `BCC`
/// header, which RabbitMQ routes on and removes. A queue that dead-letters without a routing
/// key of its own then routes the copy on `routing_key` (dead-lettering keeps the routing
/// keys a message was published with, `BCC` excepted).
pub(crate) async fn send_to_queue_keeping_route(
    channel: &Channel,
    queue: &str,
    routing_key: &str,
    message: &Message,
) -> Result<PublisherConfirm, Refusal> {
    let properties = wire::properties(message, None);
    let mut headers = properties.headers().clone().unwrap_or_default();
    headers.insert(
        "BCC".into(),
        AMQPValue::FieldArray(vec![AMQPValue::LongString(LongString::from(queue))].into()),
    );
    let properties = properties.with_headers(headers);
    send_with(channel, "", routing_key, message, properties).await
}

async fn send_with(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    message: &Message,
    properties: BasicProperties,
) -> Result<PublisherConfirm, Refusal> {
    channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            message.payload(),
            properties,
        )
        .await
        .map_err(|e| {
            // A closed channel or connection refuses before writing: certainly not sent.
            let outcome = match e.kind() {
                ErrorKind::InvalidChannelState(..) | ErrorKind::InvalidConnectionState(_) => {
                    PublishOutcome::NotSent
                }
                _ => PublishOutcome::Ambiguous,
            };
            Refusal {
                outcome,
                reason: format!("send failed: {}", describe(&e)),
                source: Some(e),
            }
        })
}

/// What a confirm said. `Ok(Some(id))` carries the message id of a returned (unroutable)
/// message, which may belong to another publish on the same channel.
pub(crate) async fn confirmed(
    confirm: PublisherConfirm,
    timeout: Duration,
) -> Result<Option<String>, Refusal> {
    match tokio::time::timeout(timeout, confirm).await {
        Err(_) => Err(Refusal::new(
            PublishOutcome::Ambiguous,
            format!("no confirm within {timeout:?}"),
        )),
        Ok(Err(e)) => Err(Refusal {
            outcome: confirm_outcome(&e),
            reason: format!("confirm failed: {}", describe(&e)),
            source: Some(e),
        }),
        Ok(Ok(Confirmation::Ack(returned))) => Ok(returned.map(|r| {
            r.properties
                .message_id()
                .as_ref()
                .map(|id| id.as_str().to_owned())
                .unwrap_or_default()
        })),
        // A fanout exchange may have enqueued the message in some queues before another
        // refused it: not certainly unstored.
        Ok(Ok(Confirmation::Nack(_))) => Err(Refusal::new(
            PublishOutcome::Ambiguous,
            "the broker nacked the message (a queue refused it: full or failing)",
        )),
        Ok(Ok(Confirmation::NotRequested)) => Err(Refusal::new(
            PublishOutcome::Ambiguous,
            "channel is not in confirm mode",
        )),
    }
}

/// The refusal for a message the broker returned as unroutable: no queue is bound yet, so
/// nothing was stored, and the publish succeeds once a consumer group declares its queue.
pub(crate) fn unroutable(exchange: &str, routing_key: &str) -> Refusal {
    let target = if exchange.is_empty() {
        format!("queue {routing_key:?}")
    } else {
        format!("exchange {exchange:?}")
    };
    Refusal::new(
        PublishOutcome::NoDestination,
        format!("unroutable: no queue is bound to {target} (basic.return NO_ROUTE)"),
    )
}
