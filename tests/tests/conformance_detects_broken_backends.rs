//! The conformance suite must fail a backend that loses messages while claiming success.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use waybill_core::testkit::conformance::{run, ConformanceTarget, MemoryTarget, Scale};
use waybill_core::{
    BoxError, BrokerError, BrokerPosition, Capabilities, Message, PublishError, Publisher, Receipt,
    Subscriber,
};

/// Confirms every seventh publish without storing it.
struct LossyPublisher {
    inner: Arc<dyn Publisher>,
    count: AtomicU64,
}

#[async_trait]
impl Publisher for LossyPublisher {
    async fn publish(&self, topic: &str, message: Message) -> Result<Receipt, PublishError> {
        if self.count.fetch_add(1, Ordering::Relaxed) % 7 == 3 {
            return Ok(Receipt {
                message_id: message.id(),
                topic: topic.to_owned(),
                position: BrokerPosition::Sequence(0),
            });
        }
        self.inner.publish(topic, message).await
    }

    async fn close(&self) -> Result<(), BrokerError> {
        self.inner.close().await
    }
}

struct LossyTarget(MemoryTarget);

#[async_trait]
impl ConformanceTarget for LossyTarget {
    fn name(&self) -> String {
        "lossy in-memory".to_owned()
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }
    fn scale(&self) -> Scale {
        Scale {
            case_timeout: std::time::Duration::from_secs(2),
            ..Scale::default()
        }
    }
    async fn prepare_topic(&self, topic: &str) -> Result<(), BoxError> {
        self.0.prepare_topic(topic).await
    }
    async fn publisher(&self) -> Result<Arc<dyn Publisher>, BoxError> {
        Ok(Arc::new(LossyPublisher {
            inner: self.0.publisher().await?,
            count: AtomicU64::new(0),
        }))
    }
    async fn subscriber(&self, topic: &str, group: &str) -> Result<Box<dyn Subscriber>, BoxError> {
        self.0.subscriber(topic, group).await
    }
    async fn dead_letter_subscriber(
        &self,
        topic: &str,
        group: &str,
    ) -> Result<Box<dyn Subscriber>, BoxError> {
        self.0.dead_letter_subscriber(topic, group).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_loses_confirmed_messages_fails_the_suite() {
    let report = run(&LossyTarget(MemoryTarget::new())).await;
    println!("{report}");
    let failed = report.failed();
    for case in [
        "id_key_payload_and_headers_round_trip",
        "publish_batch_confirms_each_message",
        "many_publishers_and_subscribers_lose_nothing",
        "processor_keeps_per_key_order_under_retries",
    ] {
        assert!(
            failed.contains(&case),
            "{case} should fail against a lossy backend:\n{report}"
        );
    }
}
