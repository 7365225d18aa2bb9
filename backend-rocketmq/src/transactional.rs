//! RocketMQ transactional messages: half message, local transaction, commit or rollback, and
//! the broker's check-back answered from the application's database.
//!
//! This is an alternative to the outbox, not an addition to it: the message stays invisible
//! (a *half message*) until the application's local transaction commits; if the process dies
//! between the two, the broker asks back, and [`TransactionCheck`] answers from the database.
//! Consumers still deduplicate with the idempotency store: a commit may be delivered twice.

use std::any::Any;
use std::future::Future;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rocketmq_client_rust::{
    LocalTransactionState, SendStatus, TransactionListener, TransactionMQProducer,
};
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::MessageTrait;
use tokio::sync::{oneshot, RwLock};
use tracing::Instrument;
use waybill_core::telemetry;
use waybill_core::{BrokerError, BrokerPosition, Message, PublishError, PublishOutcome, Receipt};

use crate::config::RocketConfig;
use crate::error_class::{broker_error, describe, publish_outcome};
use crate::names::check_topic;
use crate::runtime::{client_runtime, Erased, RocketFuture};
use crate::wire;

/// The state of a local transaction, as the broker needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionState {
    /// The local transaction committed: deliver the message.
    Commit,
    /// The local transaction rolled back (or never happened): discard the message.
    Rollback,
    /// Not known yet: the broker asks again later.
    Unknown,
}

impl From<TransactionState> for LocalTransactionState {
    fn from(s: TransactionState) -> Self {
        match s {
            TransactionState::Commit => Self::CommitMessage,
            TransactionState::Rollback => Self::RollbackMessage,
            TransactionState::Unknown => Self::Unknown,
        }
    }
}

/// Answers the broker's check-back for a half message whose outcome it did not hear: looks up
/// the application's database (typically a row the local transaction wrote with the
/// message's id) and says whether that transaction committed.
#[async_trait]
pub trait TransactionCheck: Send + Sync + 'static {
    /// The state of the local transaction that sent `message`.
    async fn check(&self, message: &Message) -> TransactionState;
}

/// What the local transaction of [`RocketTransactionalProducer::send`] decided.
#[derive(Debug)]
pub struct TransactionOutcome<T> {
    /// The half message's receipt (queue and offset of the half message).
    pub receipt: Receipt,
    /// The local transaction's result; `Ok` committed the message, `Err` rolled it back.
    pub local: T,
}

/// Why a transactional send failed.
#[derive(Debug, thiserror::Error)]
pub enum TransactionalError<E> {
    /// The half message was not stored (or may have been: see its outcome); the local
    /// transaction did not run.
    #[error("half message not stored: {0}")]
    Half(#[from] PublishError),
    /// The local transaction failed; the half message is rolled back.
    #[error("local transaction failed; message rolled back")]
    Local(E),
}

/// One send's meeting point between the client's listener thread and the caller.
struct Rendezvous {
    /// Told when the half message is stored.
    stored: Mutex<Option<oneshot::Sender<()>>>,
    /// The caller's decision, once its local transaction ended.
    decision: Mutex<Option<mpsc::Receiver<TransactionState>>>,
    /// Longest wait for the decision; after it, the state is left to the check-back.
    wait: Duration,
}

struct Listener {
    check: Arc<dyn TransactionCheck>,
    app: tokio::runtime::Handle,
}

impl TransactionListener for Listener {
    fn execute_local_transaction(
        &self,
        _msg: &dyn MessageTrait,
        arg: Option<&(dyn Any + Send + Sync)>,
    ) -> LocalTransactionState {
        let Some(meet) = arg.and_then(|a| a.downcast_ref::<Arc<Rendezvous>>()) else {
            return LocalTransactionState::Unknown;
        };
        if let Some(stored) = meet.stored.lock().ok().and_then(|mut s| s.take()) {
            let _ = stored.send(());
        }
        let decision = meet.decision.lock().ok().and_then(|mut d| d.take());
        match decision.map(|d| d.recv_timeout(meet.wait)) {
            Some(Ok(state)) => state.into(),
            // The caller went away or took too long: the check-back decides.
            _ => LocalTransactionState::Unknown,
        }
    }

    fn check_local_transaction(&self, msg: &MessageExt) -> LocalTransactionState {
        let message = wire::message(msg);
        let check = Arc::clone(&self.check);
        // This runs on the client's blocking lane, outside any async context, so the
        // application's runtime can run the (database) check to completion here.
        self.app
            .block_on(async move { check.check(&message).await })
            .into()
    }
}

/// Sends messages in RocketMQ transactions whose outcome follows a local (database)
/// transaction. See the module documentation for when to use it instead of the outbox.
///
/// The producer group (from [`crate::RocketConfigBuilder::producer_group`]) is what the
/// broker's check-back addresses: keep it stable, and keep a producer of that group running
/// so that half messages of a crashed process are resolved.
#[derive(Clone)]
pub struct RocketTransactionalProducer {
    /// Sends share the producer; closing takes it exclusively.
    producer: Erased<RwLock<TransactionMQProducer>>,
    wait: Duration,
}

impl RocketTransactionalProducer {
    /// Starts a transactional producer whose check-backs `check` answers. Must be called
    /// within a Tokio runtime (check-backs run on it).
    ///
    /// # Errors
    /// [`BrokerError`] when the producer cannot start.
    pub fn connect(
        config: RocketConfig,
        check: impl TransactionCheck,
    ) -> RocketFuture<'static, Result<Self, BrokerError>> {
        crate::runtime::boxed(async move {
            let listener = Listener {
                check: Arc::new(check),
                app: tokio::runtime::Handle::current(),
            };
            let mut builder = TransactionMQProducer::builder(client_runtime()?)
                .client_config(config.client_config());
            if let Some(hook) = config.security.rpc_hook() {
                builder = builder.rpc_hook(hook);
            }
            let mut producer = builder
                .producer_group(config.producer_group.as_str())
                .name_server_addr(config.name_server.as_str())
                .send_msg_timeout(
                    u32::try_from(config.send_timeout.as_millis()).unwrap_or(u32::MAX),
                )
                .retry_times_when_send_failed(0)
                .transaction_listener(listener)
                .build();
            producer
                .start()
                .await
                .map_err(|e| broker_error("connect", &e))?;
            Ok(Self {
                producer: Erased::new(RwLock::new(producer)),
                wait: config.send_timeout.max(Duration::from_secs(30)),
            })
        })
    }

    /// Sends `message` to `topic` as a half message; once it is stored, runs `local` (the
    /// application's transaction, which should record the message id with its data) and
    /// commits the message if `local` returns `Ok`, rolls it back if `Err`.
    ///
    /// The send runs in a `send {topic}` span whose context travels in the message's headers
    /// (with the `otel` feature), and is counted in `messaging.client.sent.messages` like any
    /// publish; a rolled-back message is not counted.
    ///
    /// If this process dies before telling the broker, the broker's check-back asks the
    /// [`TransactionCheck`] of a producer of the same group.
    ///
    /// # Errors
    /// [`TransactionalError::Half`] when the half message was not stored (the local
    /// transaction did not run); [`TransactionalError::Local`] when the local transaction
    /// failed.
    pub async fn send<F, Fut, T, E>(
        &self,
        topic: &str,
        message: Message,
        local: F,
    ) -> Result<TransactionOutcome<T>, TransactionalError<E>>
    where
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = Result<T, E>> + Send,
        T: Send,
        E: Send,
    {
        crate::runtime::boxed(async move {
            let mut message = message;
            let span = waybill_core::spans::send_span("rocketmq", topic, &mut message);
            let started = Instant::now();
            let result = self
                .send_in_transaction(topic, message, local)
                .instrument(span)
                .await;
            let outcome = match &result {
                Ok(_) => Some(None),
                Err(TransactionalError::Half(e)) => Some(Some(e.outcome())),
                Err(TransactionalError::Local(_)) => None, // rolled back: nothing was sent
            };
            if let Some(outcome) = outcome {
                telemetry::record_send("rocketmq", topic, outcome, started.elapsed());
            }
            result
        })
        .await
    }

    /// [`RocketTransactionalProducer::send`] without its span and metrics.
    async fn send_in_transaction<F, Fut, T, E>(
        &self,
        topic: &str,
        message: Message,
        local: F,
    ) -> Result<TransactionOutcome<T>, TransactionalError<E>>
    where
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = Result<T, E>> + Send,
        T: Send,
        E: Send,
    {
        let wire_message = match prepare(topic, &message) {
            Ok(m) => m,
            Err(reason) => return Err(PublishError::permanent(topic, message, reason).into()),
        };
        let (stored_tx, stored_rx) = oneshot::channel();
        let (decision_tx, decision_rx) = mpsc::channel();
        let meet = Arc::new(Rendezvous {
            stored: Mutex::new(Some(stored_tx)),
            decision: Mutex::new(Some(decision_rx)),
            wait: self.wait,
        });
        let producer = self.producer.shared().read_owned().await;
        let send = tokio::spawn(async move {
            producer
                .send_message_in_transaction(wire_message, Some(meet))
                .await
        });
        if stored_rx.await.is_err() {
            // The half message was not stored: the listener never ran.
            let reason = match send.await {
                Ok(Ok(r)) => format!(
                    "half message answered {}",
                    r.send_result
                        .map_or("nothing".into(), |s| s.send_status.to_string())
                ),
                Ok(Err(e)) => {
                    return Err(PublishError::new(
                        publish_outcome(&e),
                        topic,
                        message,
                        describe(&e),
                    )
                    .into())
                }
                Err(e) => e.to_string(),
            };
            return Err(PublishError::ambiguous(topic, message, reason).into());
        }
        let local = local().await;
        let state = if local.is_ok() {
            TransactionState::Commit
        } else {
            TransactionState::Rollback
        };
        let _ = decision_tx.send(state);
        let sent = send.await;
        let receipt = match sent {
            Ok(Ok(result)) => result.send_result.and_then(|r| {
                (r.send_status == SendStatus::SendOk).then(|| Receipt {
                    message_id: message.id(),
                    topic: topic.to_owned(),
                    position: BrokerPosition::QueueOffset {
                        broker_message_id: r.msg_id.map(|s| s.to_string()).unwrap_or_default(),
                        queue_id: r.message_queue.as_ref().map_or(-1, |q| q.queue_id()),
                        queue_offset: i64::try_from(r.queue_offset).unwrap_or(i64::MAX),
                    },
                })
            }),
            _ => None,
        };
        match (local, receipt) {
            (Ok(local), Some(receipt)) => Ok(TransactionOutcome { receipt, local }),
            (Err(e), _) => Err(TransactionalError::Local(e)),
            (Ok(_), None) => Err(PublishError::new(
                PublishOutcome::Ambiguous,
                topic,
                message,
                "the local transaction committed but the send's result was lost; the check-back decides",
            )
            .into()),
        }
    }

    /// Stops the producer (half messages still open are resolved by check-backs to another
    /// producer of the group).
    pub fn close(&self) -> RocketFuture<'_, ()> {
        crate::runtime::boxed(async move {
            self.producer.get().write().await.shutdown().await;
        })
    }
}

fn prepare(
    topic: &str,
    message: &Message,
) -> Result<rocketmq_model::common::message::message_single::Message, String> {
    check_topic(topic).map_err(|e| e.to_string())?;
    let headers = wire::wire_headers(message).map_err(|e| e.to_string())?;
    wire::rocket_message(topic, message, &headers).map_err(|e| e.to_string())
}
