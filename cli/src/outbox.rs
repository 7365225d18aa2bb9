//! `waybill outbox`: migrations, the backlog per topic, and the dead rows (list, replay,
//! purge).

use serde_json::json;
use waybill_outbox::OutboxInspector;

use crate::database::open;
use crate::exit::{Failure, Outcome};
use crate::output::{changed, summary, Rows};
use crate::settings::{DeadCommand, OutboxCommand, Settings};

/// Runs `command` against the database of `settings`.
pub async fn run(command: OutboxCommand, settings: Settings, json: bool) -> Outcome {
    let database = open(&settings.database_url).await?;
    match command {
        OutboxCommand::Migrate => {
            database.migrate().await?;
            println!(
                "{}",
                summary(json, "migrations applied", json!({ "migrated": true }))
            );
            Ok(())
        }
        OutboxCommand::Pending => pending(&database.inspector(), json).await,
        OutboxCommand::Dead(dead) => dead_rows(&database.inspector(), dead, json).await,
    }
}

async fn pending(inspector: &OutboxInspector, json: bool) -> Outcome {
    let topics = inspector.topics().await.map_err(|e| e.to_string())?;
    let mut rows = Rows::new(&["TOPIC", "PENDING", "OLDEST_AGE_S", "DEAD"]);
    for t in topics {
        rows.push(vec![
            json!(t.topic),
            json!(t.pending),
            json!((t.oldest_age_seconds * 10.0).round() / 10.0),
            json!(t.dead),
        ]);
    }
    println!("{}", rows.render(json));
    Ok(())
}

async fn dead_rows(inspector: &OutboxInspector, command: DeadCommand, json: bool) -> Outcome {
    match command {
        DeadCommand::List { filter, limit } => {
            let found = inspector
                .dead(&filter.to_filter(false).map_err(Failure::Usage)?, limit)
                .await
                .map_err(|e| e.to_string())?;
            let mut rows = Rows::new(&[
                "SEQ",
                "MESSAGE_ID",
                "TOPIC",
                "KEY",
                "ATTEMPTS",
                "DEAD_FOR_S",
                "LAST_ERROR",
            ]);
            for r in found {
                rows.push(vec![
                    json!(r.seq),
                    json!(r.message_id.to_string()),
                    json!(r.topic),
                    json!(r.key),
                    json!(r.attempts),
                    json!(r.dead_for_seconds.round()),
                    json!(r.last_error),
                ]);
            }
            println!("{}", rows.render(json));
            Ok(())
        }
        DeadCommand::Replay { filter } => {
            let n = inspector
                .replay(&filter.to_filter(true).map_err(Failure::Usage)?)
                .await
                .map_err(|e| e.to_string())?;
            changed(
                json,
                &format!("{n} dead rows made pending again"),
                json!({ "replayed": n }),
                n,
                filter.all,
                "dead row",
            )
        }
        DeadCommand::Purge { filter } => {
            let n = inspector
                .purge(&filter.to_filter(true).map_err(Failure::Usage)?)
                .await
                .map_err(|e| e.to_string())?;
            changed(
                json,
                &format!("{n} dead rows deleted"),
                json!({ "purged": n }),
                n,
                filter.all,
                "dead row",
            )
        }
    }
}
