//! Where the local test broker, tansu 0.6 on SQLite storage, deviates from Apache Kafka, pinned
//! so that a tansu that fixes them makes these tests fail (and the workarounds can go).
//!
//! Each test runs its own tansu instance on a free port with a temporary data directory, so
//! the damage it pins cannot reach the shared test broker, and drives it with an independent
//! client (Python confluent-kafka). Workaround in this project: tests never delete topics, and
//! the test command starts the shared broker empty. Transactions are pinned in
//! `kafka_transactions.rs`.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private tansu broker, killed on drop.
struct PrivateTansu {
    child: Child,
    address: String,
    dir: std::path::PathBuf,
}

impl PrivateTansu {
    fn start() -> Self {
        let tools = std::env::var("WAYBILL_TOOLS_DIR").unwrap_or_else(|_| {
            format!(
                "{}/.cache/waybill/tools",
                std::env::var("HOME").unwrap_or_default()
            )
        });
        let binary = format!("{tools}/tansu-0.6.0/bin/tansu");
        assert!(
            std::path::Path::new(&binary).exists(),
            "tansu is not installed at {binary}: run `scripts/brokers install kafka`"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let dir = std::env::temp_dir().join(format!("wb-tansu-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new(binary)
            .current_dir(&dir)
            .args([
                "broker",
                "--listener-url",
                &format!("tcp://{address}"),
                "--advertised-listener-url",
                &format!("tcp://{address}"),
                "--storage-engine",
                "sqlite://tansu.db",
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
        }
    }
}

impl Drop for PrivateTansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
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
fn deleting_one_topic_makes_another_topic_unknown() {
    let tansu = PrivateTansu::start();
    let out = python(DELETE_ONE_OF_TWO, &tansu.address);
    // Apache Kafka prints "kept topic known: True".
    assert_eq!(
        out, "kept topic known: False",
        "tansu 0.6 loses the other topic when one is deleted; if this changed, the \
         tests may delete their topics again"
    );
}
