//! Where tansu 0.6 deviates from Apache Kafka, pinned on both its storages (SQLite, and
//! PostgreSQL, which the shared test broker runs on: see the README's broker notes) so that a
//! tansu that fixes them makes these tests fail (and the workarounds can go).
//!
//! Each test runs its own tansu instance on a free port with a temporary data directory (and,
//! on PostgreSQL, a database of its own), so the damage it pins cannot reach the shared test
//! broker, and drives it with an independent client (Python confluent-kafka). Workaround in
//! this project: tests never delete topics, and the test command starts the shared broker
//! empty. Transactions are pinned in
//! `kafka_transactions.rs`.

#[path = "support/free_port.rs"]
mod free_port;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The storage a private tansu runs on.
#[derive(Clone, Copy, Debug)]
enum Storage {
    /// A SQLite file in the instance's temporary directory.
    Sqlite,
    /// A database of its own in the local PostgreSQL (the shared test broker's storage), with
    /// tansu's schema applied from `scripts/tansu/postgres-schema.sql`.
    Postgres,
}

/// A private tansu broker, killed on drop (its PostgreSQL database dropped).
struct PrivateTansu {
    child: Child,
    address: String,
    dir: std::path::PathBuf,
    database: Option<String>,
}

/// Runs `psql` against the local PostgreSQL as `postgres`, failing the test when it fails.
fn psql(args: &[&str]) {
    let out = Command::new("psql")
        .args([
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
        ])
        .args(args)
        .output()
        .expect("psql runs (PostgreSQL's client: apt-get install -y postgresql-client)");
    assert!(
        out.status.success(),
        "psql {args:?} failed (is PostgreSQL up? scripts/brokers start postgres): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PrivateTansu {
    fn start(storage: Storage) -> Self {
        let tools = std::env::var("WAYBILL_TOOLS_DIR").unwrap_or_else(|_| {
            format!(
                "{}/.cache/waybill/tools",
                std::env::var("HOME").unwrap_or_default()
            )
        });
        // The build `scripts/brokers install kafka` makes (its TANSU_BUILD).
        let binary = format!("{tools}/tansu-0.6.0-waybill1/bin/tansu");
        assert!(
            std::path::Path::new(&binary).exists(),
            "tansu is not installed at {binary}: run `scripts/brokers install kafka`"
        );
        let port = free_port::free_port();
        let address = format!("127.0.0.1:{port}");
        let dir = std::env::temp_dir().join(format!("wb-tansu-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let (engine, database) = match storage {
            Storage::Sqlite => ("sqlite://tansu.db".to_owned(), None),
            Storage::Postgres => {
                let database = format!("wb_tansu_{port}");
                let schema = concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../scripts/tansu/postgres-schema.sql"
                );
                psql(&["-c", &format!("create database {database}")]);
                psql(&["-d", &database, "-f", schema]);
                let url = format!("postgres://postgres@127.0.0.1:5432/{database}?sslmode=disable");
                (url, Some(database))
            }
        };
        let child = Command::new(binary)
            .current_dir(&dir)
            .args([
                "broker",
                "--listener-url",
                &format!("tcp://{address}"),
                "--advertised-listener-url",
                &format!("tcp://{address}"),
                "--storage-engine",
                &engine,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let started = Instant::now();
        while TcpStream::connect(&address).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "tansu did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child,
            address,
            dir,
            database,
        }
    }
}

impl Drop for PrivateTansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(database) = &self.database {
            psql(&[
                "-c",
                &format!("drop database if exists {database} with (force)"),
            ]);
        }
    }
}

fn python(script: &str, broker: &str) -> String {
    let out = Command::new("python3")
        .args(["-c", script, broker])
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'confluent_kafka'"),
        "the independent client is missing: `python3 -m pip install confluent-kafka` \
         (scripts/test installs it)"
    );
    assert!(out.status.success(), "python failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

const DELETE_ONE_OF_TWO: &str = r#"
import sys, time
from confluent_kafka.admin import AdminClient, NewTopic
a = AdminClient({"bootstrap.servers": sys.argv[1]})
keep, gone = "keep", "gone"
for f in a.create_topics([NewTopic(keep, 1, 1), NewTopic(gone, 1, 1)]).values(): f.result()
assert keep in a.list_topics(timeout=10).topics
a.delete_topics([gone])[gone].result()
md = a.list_topics(topic=keep, timeout=10).topics[keep]
print("kept topic known:", md.error is None and len(md.partitions) == 1)
"#;

#[test]
fn deleting_one_topic_makes_another_topic_unknown_on_sqlite() {
    deleting_one_topic_makes_another_topic_unknown(Storage::Sqlite);
}

#[test]
fn deleting_one_topic_makes_another_topic_unknown_on_postgres() {
    deleting_one_topic_makes_another_topic_unknown(Storage::Postgres);
}

fn deleting_one_topic_makes_another_topic_unknown(storage: Storage) {
    let tansu = PrivateTansu::start(storage);
    let out = python(DELETE_ONE_OF_TWO, &tansu.address);
    // Apache Kafka prints "kept topic known: True".
    assert_eq!(
        out, "kept topic known: False",
        "tansu 0.6 loses the other topic when one is deleted; if this changed, the \
         tests may delete their topics again"
    );
}

/// A consumer of `topic` in `group` that prints `assigned <partitions>` whenever its
/// assignment changes, and runs until killed.
const MEMBER: &str = r#"
import sys
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[3],
              "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000,
              "auto.offset.reset": "earliest"})
def assigned(consumer, partitions):
    print("assigned " + ",".join(str(p.partition) for p in partitions), flush=True)
c.subscribe([sys.argv[2]], on_assign=assigned)
while True:
    c.poll(0.2)
"#;

const CREATE_FOUR_PARTITIONS: &str = r#"
import sys
from confluent_kafka.admin import AdminClient, NewTopic
a = AdminClient({"bootstrap.servers": sys.argv[1]})
for f in a.create_topics([NewTopic("shared", 4, 1)]).values(): f.result()
print("created")
"#;

/// A group member in a Python process, with its assignments as it prints them.
struct Member {
    child: Child,
    assignments: std::sync::mpsc::Receiver<String>,
    last: Option<String>,
}

impl Member {
    fn start(broker: &str) -> Self {
        use std::io::BufRead;
        let mut child = Command::new("python3")
            .args(["-c", MEMBER, broker, "shared", "members"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs");
        let stdout = child.stdout.take().unwrap();
        let (send, assignments) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(partitions) = line.strip_prefix("assigned ") {
                    let _ = send.send(partitions.to_owned());
                }
            }
        });
        Self {
            child,
            assignments,
            last: None,
        }
    }

    /// Waits up to `within` for the assignment to become `partitions`; returns the last one.
    fn wait_for(&mut self, partitions: &[&str], within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        while !self.holds(partitions) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.assignments.recv_timeout(left) {
                Ok(now) => self.last = Some(now),
                Err(_) => break,
            }
        }
        self.last.clone()
    }

    fn holds(&self, partitions: &[&str]) -> bool {
        self.last
            .as_deref()
            .is_some_and(|p| partitions.contains(&p))
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Found with the consumer-kill chaos test: partitions of a SIGKILLed member stayed
/// unconsumed while the surviving member went on with its own. tansu drops the member whose
/// session expired while answering the survivor's heartbeat (REBALANCE_IN_PROGRESS), but leaves
/// the group in its formed state with the same generation, so the survivor's rejoin is answered
/// with that generation and its sync with its old assignment: the dead member's partitions are
/// assigned to nobody until a new member joins. Apache Kafka assigns them to the survivor once
/// the session timeout passes. So no Kafka test here kills a consumer process of a group
/// (RabbitMQ's chaos tests do).
#[test]
fn partitions_of_a_killed_member_are_not_reassigned_to_the_survivor_on_sqlite() {
    partitions_of_a_killed_member_are_not_reassigned_to_the_survivor(Storage::Sqlite);
}

#[test]
fn partitions_of_a_killed_member_are_not_reassigned_to_the_survivor_on_postgres() {
    partitions_of_a_killed_member_are_not_reassigned_to_the_survivor(Storage::Postgres);
}

fn partitions_of_a_killed_member_are_not_reassigned_to_the_survivor(storage: Storage) {
    let tansu = PrivateTansu::start(storage);
    assert_eq!(python(CREATE_FOUR_PARTITIONS, &tansu.address), "created");
    let mut first = Member::start(&tansu.address);
    let all = ["0,1,2,3"];
    assert_eq!(
        first.wait_for(&all, Duration::from_secs(60)).as_deref(),
        Some("0,1,2,3"),
        "the first member gets every partition"
    );
    let mut second = Member::start(&tansu.address);
    let halves = ["0,1", "2,3"];
    let kept = second.wait_for(&halves, Duration::from_secs(60));
    assert!(
        second.holds(&halves),
        "the second member gets half the partitions: {kept:?}"
    );
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    // Apache Kafka: the session (6 s) expires, the survivor rejoins and gets "0,1,2,3".
    let after = second.wait_for(&all, Duration::from_secs(20));
    assert_eq!(
        after, kept,
        "tansu 0.6 keeps the survivor at its old share after the other member was killed; if \
         this changed, a Kafka chaos test can kill a consumer process of a group"
    );
}
