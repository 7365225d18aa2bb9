//! waybill-bench: throughput figures measured in one run, printed with ratios against the raw
//! path of the same broker.
//!
//! `cargo run --release -p waybill-bench -- [processor|rabbitmq|rabbitmq-partitioned|kafka|rocketmq|outbox|outbox-backlog|stores|redrive|audit|inbox] [--messages N]`
//!
//! - `processor`: the consumer runtime over the in-memory broker with a trivial handler, against
//!   a raw receive-and-ack loop on the same broker (serial, and with 64 handler+ack tasks at
//!   once, as the processor's 64 slots), in `Unordered` and `PerKey` (1,000 keys)
//!   modes, with and without the in-memory idempotency store, then with a Prometheus recorder
//!   and with OpenTelemetry traces as well, every trace sampled and 1% of new traces sampled
//!   (`ParentBased`; the messages carry their producer's trace context) (median of 5 runs each;
//!   `WAYBILL_BENCH_OTEL_LAYER=lean` turns off the layer's busy/idle times, code location and
//!   threads; `WAYBILL_BENCH_PROCESSOR_ONLY=off|metrics|traced|traced-1pct` runs one of these
//!   once, alone in its process, for counting instructions under callgrind).
//! - `rabbitmq`: confirmed publishing and consuming through waybill against raw lapin on the
//!   same server (`WAYBILL_RABBITMQ_URL`, default the local broker; consuming `Unordered`
//!   without a store, `PerKey` with the in-memory store and with the PostgreSQL inbox), and
//!   the outbox relay from PostgreSQL to RabbitMQ against direct publishing.
//! - `rabbitmq-partitioned`: a partitioned group (6 partitions) drained by three members
//!   against one member, each a Processor whose handler takes 1 ms (at most 20,000 messages).
//! - `kafka`: confirmed publishing and consuming through waybill against raw rdkafka on the same
//!   broker (`WAYBILL_KAFKA_BROKERS`, default the local one), and the outbox relay from
//!   PostgreSQL to Kafka against direct publishing (at most 20,000 messages).
//! - `rocketmq`: waybill's confirmed publish against the raw client's synchronous send, and
//!   `publish_batch` against the raw client's per-queue batch sends, on the same servers
//!   (`WAYBILL_ROCKETMQ_NAMESRV`, default the local name server), and the outbox relay from
//!   PostgreSQL to RocketMQ against direct publishing (at most 20,000 messages).
//!
//!   Each relay figure runs twice, over 1,000 keys and over 10 hot keys, against
//!   `publish_batch` of the same messages.
//! - `outbox`: relay throughput from PostgreSQL, SQLite and MariaDB to the in-memory
//!   publisher, and the cost of `enqueue` inside a business transaction
//!   (`WAYBILL_POSTGRES_URL`, `WAYBILL_MYSQL_URL`, default local).
//! - `stores`: claim + complete and duplicate claims per second on the in-memory store, the
//!   PostgreSQL inbox, Redis and Redis layered over PostgreSQL, with ratios to PostgreSQL
//!   (`WAYBILL_REDIS_URL`, default local; at most 50,000 messages).
//! - `outbox-backlog`: a backlog of 1,000,000 rows (or `--messages N`) drained by one relay:
//!   throughput and the process's peak RSS.
//! - `redrive`: replaying a group's dead letters (RabbitMQ queue, Kafka topic) against
//!   publishing the same messages directly to where the replay sends them (at most 20,000).
//! - `inbox`: the Processor writing an effect row per message on PostgreSQL (in-memory
//!   broker): a batch handler against the single-message handler, both in transactional mode
//!   (effects and inbox markers in one transaction), and the single-message handler against
//!   the Processor without an inbox (at most 50,000 messages).
//! - `audit`: the sent log against a group's inbox on PostgreSQL, 1,000,000 ids each (or
//!   `--messages N`): time and the process's peak RSS.

// The raw RocketMQ client's futures nest deeply; proving them Send needs a higher limit.
#![recursion_limit = "256"]

mod audit_bench;
mod inbox_bench;
mod kafka_bench;
mod outbox_backlog_bench;
mod outbox_bench;
mod outbox_mysql_bench;
mod processor_bench;
mod rabbitmq_bench;
mod rabbitmq_partitioned_bench;
mod redrive_bench;
mod rocketmq_bench;
mod store_bench;

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut suite = "processor".to_owned();
    let mut messages = 300_000usize;
    let mut explicit_messages = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--messages" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => {
                    messages = n;
                    explicit_messages = true;
                }
                _ => {
                    eprintln!("--messages needs a positive number");
                    return ExitCode::FAILURE;
                }
            },
            "processor"
            | "rabbitmq"
            | "rabbitmq-partitioned"
            | "kafka"
            | "rocketmq"
            | "outbox"
            | "outbox-backlog"
            | "stores"
            | "redrive"
            | "audit"
            | "inbox" => suite = arg,
            "-h" | "--help" => {
                println!(
                    "usage: waybill-bench [processor|rabbitmq|rabbitmq-partitioned|kafka|rocketmq|outbox|outbox-backlog|stores|redrive|audit|inbox] [--messages N]"
                );
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument {other:?}; try --help");
                return ExitCode::FAILURE;
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match suite.as_str() {
        "processor" => runtime.block_on(processor_bench::run(messages)),
        "outbox" => runtime.block_on(outbox_bench::run(messages.min(200_000))),
        "stores" => runtime.block_on(store_bench::run(messages.min(50_000))),
        "inbox" => runtime.block_on(inbox_bench::run(messages.min(50_000))),
        "outbox-backlog" => runtime.block_on(outbox_backlog_bench::run(if explicit_messages {
            messages
        } else {
            1_000_000
        })),
        "audit" => runtime.block_on(audit_bench::run(if explicit_messages {
            messages
        } else {
            1_000_000
        })),
        "kafka" => {
            let brokers = std::env::var("WAYBILL_KAFKA_BROKERS")
                .unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
            runtime.block_on(kafka_bench::run(&brokers, messages.min(20_000)))
        }
        "rocketmq" => {
            let name_server = std::env::var("WAYBILL_ROCKETMQ_NAMESRV")
                .unwrap_or_else(|_| "127.0.0.1:9876".to_owned());
            runtime.block_on(rocketmq_bench::run(&name_server, messages.min(20_000)))
        }
        "rabbitmq" => {
            let url = std::env::var("WAYBILL_RABBITMQ_URL")
                .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
            runtime.block_on(rabbitmq_bench::run(&url, messages.min(50_000)))
        }
        "rabbitmq-partitioned" => {
            let url = std::env::var("WAYBILL_RABBITMQ_URL")
                .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
            runtime.block_on(rabbitmq_partitioned_bench::run(&url, messages.min(20_000)))
        }
        "redrive" => {
            let url = std::env::var("WAYBILL_RABBITMQ_URL")
                .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
            let brokers = std::env::var("WAYBILL_KAFKA_BROKERS")
                .unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
            runtime.block_on(redrive_bench::run(&url, &brokers, messages.min(20_000)))
        }
        _ => unreachable!("suite names are checked above"),
    }
    ExitCode::SUCCESS
}
