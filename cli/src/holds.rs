//! `waybill holds`: the keys a consumer group holds behind its dead messages (key-holding
//! dead letters), listed and released.

use std::time::SystemTime;

use serde_json::json;

use crate::database::open;
use crate::exit::{Failure, Outcome};
use crate::output::{summary, Rows};
use crate::settings::{HoldsArgs, HoldsCommand, RelayFlags};

/// Runs `args.command` against the group's inbox database.
pub async fn run(args: HoldsArgs, json: bool) -> Outcome {
    let group = args
        .group
        .ok_or_else(|| Failure::Usage("--group is required".into()))?;
    let settings = args
        .database
        .settings(RelayFlags::default())
        .map_err(Failure::Usage)?;
    let holds = open(&settings.database_url).await?.key_holds();
    match args.command {
        HoldsCommand::List { limit } => {
            let held = holds
                .holds(&group, limit)
                .await
                .map_err(|e| e.to_string())?;
            let now = SystemTime::now();
            let mut rows = Rows::new(&["KEY", "HELD_BEHIND", "HELD_FOR_S"]);
            for hold in held {
                let held_for = now.duration_since(hold.since).unwrap_or_default();
                rows.push(vec![
                    json!(hold.key),
                    json!(hold.behind.to_string()),
                    json!(held_for.as_secs()),
                ]);
            }
            println!("{}", rows.render(json));
            Ok(())
        }
        HoldsCommand::Release { key } => {
            let released = holds
                .release_key(&group, &key)
                .await
                .map_err(|e| e.to_string())?;
            let Some(behind) = released else {
                return Err(Failure::NothingMatched(format!(
                    "key {key:?} of group {group:?} is not held; nothing changed"
                )));
            };
            println!(
                "{}",
                summary(
                    json,
                    &format!("released key {key:?} (it was held behind {behind})"),
                    json!({ "released": key, "held_behind": behind.to_string() }),
                )
            );
            Ok(())
        }
    }
}
