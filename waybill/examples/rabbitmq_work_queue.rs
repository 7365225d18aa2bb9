//! Recipe: a RabbitMQ work queue with retries and a dead-letter queue.
//!
//! Thirty resize jobs go to a work queue with confirmed publishes. The worker's downstream is
//! flaky: every job's first attempt fails, so each job takes one trip through the broker's
//! retry queue (a TTL queue whose dead-letter exchange routes back) and succeeds on the second.
//! One job is invalid and refused as permanent: it lands in the dead-letter queue at once, with
//! the record that says why. The program checks all of that and exits non-zero if anything is
//! off.
//!
//! `cargo run -p waybill --features rabbitmq --example rabbitmq_work_queue`
//! (`WAYBILL_RABBITMQ_URL` for another server than the local one).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use waybill::rabbitmq::{delete_group_topology, RabbitConfig, RabbitPublisher, RabbitSubscriber};
use waybill::{
    typed_handler, DeadLetterRecord, HandlerError, InMemoryIdempotencyStore, IncomingMessage,
    Message, MessageId, Processor, Publisher, RetryPolicy, Subscriber,
};

#[derive(Serialize, Deserialize)]
struct ResizeJob {
    image: String,
    width: u32,
}

const JOBS: u32 = 30;
const INVALID_JOB: u32 = 13;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("WAYBILL_RABBITMQ_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let config = RabbitConfig::builder(url)
        .retry_tiers([Duration::from_millis(500)]) // one TTL retry queue, 500 ms
        .build()?;
    let queue = format!("resize-{}", &MessageId::new().to_string()[24..]);

    // The worker group's queue exists before the first publish, so nothing is unroutable.
    let jobs = RabbitSubscriber::connect(config.clone(), &queue, "workers").await?;
    let publisher = RabbitPublisher::connect(config.clone()).await?;
    for i in 0..JOBS {
        let width = if i == INVALID_JOB { 0 } else { 640 };
        let job = ResizeJob {
            image: format!("img-{i}.png"),
            width,
        };
        publisher
            .publish(&queue, Message::json(&job)?.with_key(job.image.clone()))
            .await?;
    }

    let attempts: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let worker = {
        let attempts = Arc::clone(&attempts);
        typed_handler(move |job: ResizeJob, _message: IncomingMessage| {
            let attempt = {
                let mut seen = attempts.lock().expect("not poisoned");
                let n = seen.entry(job.image.clone()).or_insert(0);
                *n += 1;
                *n
            };
            async move {
                if job.width == 0 {
                    return Err(HandlerError::permanent(format!("{}: width 0", job.image)));
                }
                if attempt == 1 {
                    return Err(HandlerError::transient("thumbnail service busy"));
                }
                Ok(()) // resized; the Processor acknowledges after this returns
            }
        })
    };
    let retry = RetryPolicy::builder()
        .max_attempts(4)
        .in_process_attempts(1) // after one failure, retry through the broker's TTL queue
        .min_delay(Duration::from_millis(200))
        .build()?;
    let running = Processor::builder("workers")
        .idempotency(Arc::new(InMemoryIdempotencyStore::default()))
        .retry(retry)
        .build()?
        .start(jobs, worker);

    let mut dead = RabbitSubscriber::dead_letters(config.clone(), &queue, "workers").await?;
    let letter = tokio::time::timeout(Duration::from_secs(30), dead.receive())
        .await??
        .ok_or("the dead-letter queue closed")?;
    let record = DeadLetterRecord::read_from(letter.message().message().headers())?;
    letter.ack().await?;
    for _ in 0..300 {
        if running.counters().handled == u64::from(JOBS - 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let totals = running.shutdown().await?;
    dead.close().await?;
    delete_group_topology(&config, &queue, "workers", true).await?;

    println!("worker: {totals:?}");
    println!(
        "dead letter: {} after {} attempt(s): {}",
        record.message_id, record.attempts, record.error_message
    );
    let ok = totals.handled == u64::from(JOBS - 1)
        && totals.retried == u64::from(JOBS - 1)
        && totals.dead_lettered == 1
        && record
            .error_message
            .contains(&format!("img-{INVALID_JOB}.png: width 0"));
    if !ok {
        return Err("the work queue did not settle as expected".into());
    }
    println!(
        "ok: {} jobs done after one retry each, 1 dead-lettered",
        JOBS - 1
    );
    Ok(())
}
