//! `waybill relay` reading its URLs from files (the container convention for
//! secrets), and keeping passwords out of what it prints when a server refuses them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::WAYBILL as RELAY;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "waybill-sidecar-secrets-{}-{}",
        std::process::id(),
        &waybill_core::MessageId::new().to_string()[24..]
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Writes `text` and a line break to `path`, as `echo` or a secret store would.
fn secret_file(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, format!("{text}\n")).unwrap();
    path.to_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn require_port(port: u16, server: &str) {
    if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        panic!("{server} is not reachable on 127.0.0.1:{port}: scripts/brokers start {server}");
    }
}

#[test]
fn the_database_url_comes_from_the_file_named_by_the_environment() {
    let db = scratch("outbox.db");
    let url_file = secret_file(
        &scratch("database-url"),
        &format!("sqlite://{}", db.display()),
    );
    let out = Command::new(RELAY)
        .args(["outbox", "migrate"])
        .env("WAYBILL_DATABASE_URL_FILE", &url_file)
        .env_remove("WAYBILL_DATABASE_URL")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        db.exists(),
        "migrate created the database named in the file"
    );
    // `pending` reads the outbox table: it exists only if migrate ran on that database.
    let pending = Command::new(RELAY)
        .args(["outbox", "pending"])
        .arg("--database-url-file")
        .arg(&url_file)
        .env_remove("WAYBILL_DATABASE_URL_FILE")
        .env_remove("WAYBILL_DATABASE_URL")
        .output()
        .unwrap();
    assert!(pending.status.success(), "{}", stderr(&pending));
    assert!(String::from_utf8_lossy(&pending.stdout).contains("PENDING"));

    let missing = Command::new(RELAY)
        .args(["outbox", "migrate"])
        .env("WAYBILL_DATABASE_URL_FILE", scratch("no-such-secret"))
        .env_remove("WAYBILL_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("no-such-secret"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn a_broker_refusing_the_password_from_a_file_is_reported_without_it() {
    require_port(5672, "rabbitmq");
    let secret = "Wrong-Broker-Secret-5v";
    let db = scratch("outbox.db");
    let broker_file = secret_file(
        &scratch("broker-url"),
        &format!("amqp://guest:{secret}@127.0.0.1:5672/%2f"),
    );
    let out = Command::new(RELAY)
        .args(["relay", "--migrate", "--listen", "127.0.0.1:0"])
        .arg("--database-url")
        .arg(format!("sqlite://{}", db.display()))
        .arg("--broker-url-file")
        .arg(&broker_file)
        .output()
        .unwrap();
    let printed = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
    assert!(!out.status.success(), "{printed}");
    assert!(printed.contains("guest:***@127.0.0.1"), "{printed}");
    assert!(printed.contains("ACCESS_REFUSED"), "{printed}");
    assert!(!printed.contains(secret), "{printed}");
}

#[test]
fn a_database_refusing_the_password_from_a_file_is_reported_without_it() {
    require_port(3306, "mariadb");
    let secret = "Wrong-Database-Secret-3j";
    let url_file = secret_file(
        &scratch("database-url"),
        &format!("mysql://root:{secret}@127.0.0.1:3306/mysql"),
    );
    let out = Command::new(RELAY)
        .args(["outbox", "migrate"])
        .arg("--database-url-file")
        .arg(&url_file)
        .output()
        .unwrap();
    let printed = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
    assert!(!out.status.success(), "{printed}");
    assert!(printed.contains("Access denied"), "{printed}");
    assert!(printed.contains("root:***@127.0.0.1"), "{printed}");
    assert!(!printed.contains(secret), "{printed}");
}
