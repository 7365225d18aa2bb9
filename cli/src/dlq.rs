//! `waybill dlq`: a consumer group's dead letters on the broker — list, show, replay, purge.

use std::time::SystemTime;

use serde_json::{json, Value};
use waybill_core::redrive::{DeadLetter, DeadLetterFilter, RedriveReport, ReplayOptions};
use waybill_core::BrokerError;
use waybill_kafka::KafkaDeadLetters;
use waybill_rabbitmq::RabbitDeadLetters;
use waybill_rocketmq::RocketDeadLetters;

use crate::broker::{kafka_config, rabbit_config, rocket_config};
use crate::exit::{Failure, Outcome};
use crate::output::{changed, Rows};
use crate::settings::{DlqArgs, DlqCommand};

/// Longest payload `show` prints (the rest is counted, not printed).
const SHOWN_PAYLOAD_BYTES: usize = 4096;

/// Rows `list` prints unless `--limit` says otherwise.
const DEFAULT_LIST_LIMIT: usize = 100;

/// Runs `args.command` against the dead-letter queue it names.
pub async fn run(mut args: DlqArgs, json: bool) -> Outcome {
    let (url, topic, group) = args.location().map_err(Failure::Usage)?;
    let dead = dead_letters_at(&url, &topic, &group)?;
    match args.command {
        DlqCommand::List { filter } => {
            let mut filter = filter.to_filter();
            filter.limit = filter.limit.or(Some(DEFAULT_LIST_LIMIT));
            let letters = dead.list(&filter).await.map_err(failed)?;
            println!("{}", list_rows(&letters).render(json));
            Ok(())
        }
        DlqCommand::Show { id } => {
            let filter = DeadLetterFilter {
                message_ids: vec![id],
                ..DeadLetterFilter::everything()
            };
            let letters = dead.list(&filter).await.map_err(failed)?;
            let letter = letters
                .iter()
                .find(|l| l.message.id() == id)
                .ok_or_else(|| {
                    Failure::NothingMatched(format!("no dead letter {id} in {}", dead.queue()))
                })?;
            let detail = detail(letter);
            println!(
                "{}",
                if json {
                    detail.to_string()
                } else {
                    serde_json::to_string_pretty(&detail).expect("JSON values print")
                }
            );
            Ok(())
        }
        DlqCommand::Replay {
            filter,
            to,
            rate,
            dry_run,
        } => {
            let options = ReplayOptions { to, rate, dry_run };
            let report = dead
                .replay(&filter.to_filter(), &options)
                .await
                .map_err(failed)?;
            let verb = if dry_run { "would replay" } else { "replayed" };
            let sentence = format!(
                "{verb} {} of {} matching dead letters in {} ({} read{})",
                if dry_run {
                    report.matched - report.skipped_without_record
                } else {
                    report.replayed
                },
                report.matched,
                dead.queue(),
                report.scanned,
                without_record(&report)
            );
            finish(json, &report, &sentence, filter.all)
        }
        DlqCommand::Purge { filter } => {
            let filter = filter.to_filter();
            filter.check_purge().map_err(|e| {
                Failure::Usage(format!(
                    "{e}: name the dead letters with --id, --error-class or --older-than-secs, \
                     or pass --all"
                ))
            })?;
            let report = dead.purge(&filter).await.map_err(failed)?;
            let sentence = format!(
                "purged {} of {} dead letters read in {}",
                report.purged,
                report.scanned,
                dead.queue()
            );
            finish(json, &report, &sentence, filter.all)
        }
    }
}

/// A group's dead letters on one of the brokers whose redrive is written.
enum DeadLetters {
    Rabbit(RabbitDeadLetters),
    Kafka(KafkaDeadLetters),
    Rocket(RocketDeadLetters),
}

impl DeadLetters {
    /// Where the dead letters live: the queue or topic.
    fn queue(&self) -> &str {
        match self {
            Self::Rabbit(dead) => dead.queue(),
            Self::Kafka(dead) => dead.dead_letter_topic(),
            Self::Rocket(dead) => dead.dead_letter_topic(),
        }
    }

    async fn list(&self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetter>, BrokerError> {
        match self {
            Self::Rabbit(dead) => dead.list(filter).await,
            Self::Kafka(dead) => dead.list(filter).await,
            Self::Rocket(dead) => dead.list(filter).await,
        }
    }

    async fn replay(
        &self,
        filter: &DeadLetterFilter,
        options: &ReplayOptions,
    ) -> Result<RedriveReport, BrokerError> {
        match self {
            Self::Rabbit(dead) => dead.replay(filter, options).await,
            Self::Kafka(dead) => dead.replay(filter, options).await,
            Self::Rocket(dead) => dead.replay(filter, options).await,
        }
    }

    async fn purge(&self, filter: &DeadLetterFilter) -> Result<RedriveReport, BrokerError> {
        match self {
            Self::Rabbit(dead) => dead.purge(filter).await,
            Self::Kafka(dead) => dead.purge(filter).await,
            Self::Rocket(dead) => dead.purge(filter).await,
        }
    }
}

/// The dead letters of `group` on `topic` at the broker `url`.
fn dead_letters_at(url: &str, topic: &str, group: &str) -> Result<DeadLetters, Failure> {
    let scheme = url.split("://").next().unwrap_or_default();
    let usage = |e: &dyn std::fmt::Display| Failure::Usage(e.to_string());
    match scheme {
        "amqp" | "amqps" => {
            let config = rabbit_config(url, false)?;
            let dead = RabbitDeadLetters::new(config, topic, group).map_err(|e| usage(&e))?;
            Ok(DeadLetters::Rabbit(dead))
        }
        "kafka" | "kafkas" => {
            let config = kafka_config(url)?;
            let dead = KafkaDeadLetters::new(config, topic, group).map_err(|e| usage(&e))?;
            Ok(DeadLetters::Kafka(dead))
        }
        "rocketmq" | "rocketmqs" => {
            let config = rocket_config(url)?;
            let dead = RocketDeadLetters::new(config, topic, group).map_err(|e| usage(&e))?;
            Ok(DeadLetters::Rocket(dead))
        }
        other => Err(Failure::Usage(format!(
            "unsupported broker URL scheme {other:?}: waybill dlq takes amqp://, amqps://, \
             kafka://, kafkas://, rocketmq:// or rocketmqs://"
        ))),
    }
}

fn failed(e: BrokerError) -> Failure {
    Failure::Failed(e.to_string())
}

/// Prints the summary; a filter (not `--all`) that matched nothing is exit code 3.
fn finish(json: bool, report: &RedriveReport, sentence: &str, all: bool) -> Outcome {
    let object = json!({
        "scanned": report.scanned,
        "matched": report.matched,
        "replayed": report.replayed,
        "purged": report.purged,
        "skipped_without_record": report.skipped_without_record,
        "dry_run": report.dry_run,
    });
    changed(json, sentence, object, report.matched, all, "dead letter")
}

fn without_record(report: &RedriveReport) -> String {
    match report.skipped_without_record {
        0 => String::new(),
        n => format!(
            "; {n} without a dead-letter record left in place: their origin is unknown, \
             purge them with --all once read"
        ),
    }
}

fn list_rows(letters: &[DeadLetter]) -> Rows {
    let now = SystemTime::now();
    let mut rows = Rows::new(&[
        "MESSAGE_ID",
        "KEY",
        "ERROR_CLASS",
        "ATTEMPTS",
        "DEAD_FOR_S",
        "ERROR",
    ]);
    for letter in letters {
        let row = match &letter.record {
            Ok(record) => vec![
                json!(letter.message.id().to_string()),
                json!(letter.message.key()),
                json!(record.error_class.as_str()),
                json!(record.attempts),
                json!(now
                    .duration_since(record.last_failure_at)
                    .unwrap_or_default()
                    .as_secs()),
                json!(record.error_message),
            ],
            Err(e) => vec![
                json!(letter.message.id().to_string()),
                json!(letter.message.key()),
                json!("no record"),
                Value::Null,
                Value::Null,
                json!(e.to_string()),
            ],
        };
        rows.push(row);
    }
    rows
}

fn detail(letter: &DeadLetter) -> Value {
    let payload = letter.message.payload();
    let shown = &payload[..payload.len().min(SHOWN_PAYLOAD_BYTES)];
    let headers: serde_json::Map<String, Value> = letter
        .message
        .headers()
        .iter()
        .map(|(name, value)| (name.to_owned(), json!(value)))
        .collect();
    let record = match &letter.record {
        Ok(r) => json!({
            "origin": r.origin,
            "group": r.group,
            "partition": r.partition,
            "offset": r.offset,
            "attempts": r.attempts,
            "error_class": r.error_class.as_str(),
            "error_message": r.error_message,
            "first_failure_at": waybill_core::wire_time::format_millis(r.first_failure_at),
            "last_failure_at": waybill_core::wire_time::format_millis(r.last_failure_at),
        }),
        Err(e) => json!({ "missing": e.to_string() }),
    };
    json!({
        "message_id": letter.message.id().to_string(),
        "key": letter.message.key(),
        "record": record,
        "headers": headers,
        "payload_bytes": payload.len(),
        "payload": String::from_utf8_lossy(shown),
    })
}
