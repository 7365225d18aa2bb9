//! `waybill outbox` on a SQLite outbox: JSON output, and the documented exit codes for an
//! unknown URL scheme (2), a filter that matches nothing (3, nothing changed) and an
//! unreachable database (1).

use std::process::{Command, Output};

use waybill_core::Message;
use waybill_outbox::Outbox;

use super::WAYBILL;

fn waybill(args: &[&str]) -> Output {
    Command::new(WAYBILL)
        .args(args)
        .output()
        .expect("run waybill")
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[tokio::test]
async fn outbox_commands_print_json_and_exit_with_the_documented_codes() {
    let dir = std::env::temp_dir().join(format!("waybill-cli-outbox-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("shop.db");
    let _ = std::fs::remove_file(&file);
    let url = format!("sqlite://{}", file.display());

    let migrated = waybill(&["outbox", "migrate", "--database-url", &url, "--json"]);
    assert!(migrated.status.success(), "{}", text(&migrated));
    assert_eq!(
        String::from_utf8_lossy(&migrated.stdout).trim(),
        r#"{"migrated":true}"#
    );

    let pool = waybill_outbox::sqlite::connect(&url, 1).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    for i in 0..3 {
        Outbox::new()
            .enqueue(
                &mut tx,
                "orders",
                &Message::new(format!("{i}")).with_key("k"),
            )
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    pool.close().await;

    let pending = waybill(&["outbox", "pending", "--json", "--database-url", &url]);
    assert!(pending.status.success(), "{}", text(&pending));
    let rows: serde_json::Value = serde_json::from_slice(&pending.stdout).expect("JSON");
    assert_eq!(rows[0]["topic"], "orders", "{rows}");
    assert_eq!(rows[0]["pending"], 3, "{rows}");
    assert_eq!(rows[0]["dead"], 0, "{rows}");

    // A filter that matches nothing: exit code 3, and the pending rows are untouched.
    let nothing = waybill(&[
        "outbox",
        "dead",
        "purge",
        "--topic",
        "no-such-topic",
        "--database-url",
        &url,
    ]);
    assert_eq!(nothing.status.code(), Some(3), "{}", text(&nothing));
    assert!(
        text(&nothing).contains("nothing changed"),
        "{}",
        text(&nothing)
    );
    let still = waybill(&["outbox", "pending", "--json", "--database-url", &url]);
    let rows: serde_json::Value = serde_json::from_slice(&still.stdout).expect("JSON");
    assert_eq!(rows[0]["pending"], 3, "{rows}");

    // Invalid usage: exit code 2, the URL named without its password.
    let unknown = waybill(&[
        "outbox",
        "pending",
        "--database-url",
        "oracle://app:hunter2@db/shop",
    ]);
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown));
    assert!(
        text(&unknown).contains("oracle://app:***@db/shop"),
        "{}",
        text(&unknown)
    );
    assert!(!text(&unknown).contains("hunter2"), "{}", text(&unknown));
    let unfiltered = waybill(&["outbox", "dead", "replay", "--database-url", &url]);
    assert_eq!(unfiltered.status.code(), Some(2), "{}", text(&unfiltered));

    // An operation that fails: exit code 1 (nothing listens on port 9).
    let down = waybill(&[
        "outbox",
        "pending",
        "--database-url",
        "postgres://app@127.0.0.1:9/shop",
    ]);
    assert_eq!(down.status.code(), Some(1), "{}", text(&down));
    assert!(text(&down).contains("cannot connect"), "{}", text(&down));
    let _ = std::fs::remove_dir_all(&dir);
}
