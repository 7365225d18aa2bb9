//! Finding the RabbitMQ server the tests use, and the conformance target over it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use waybill_core::testkit::conformance::ConformanceTarget;
use waybill_core::{BoxError, Capabilities, Publisher, Subscriber};
use waybill_rabbitmq::{
    delete_group_topology, delete_topic, RabbitConfig, RabbitPublisher, RabbitSubscriber,
};

/// The broker URL: `WAYBILL_RABBITMQ_URL`, or the local default.
pub fn url() -> String {
    std::env::var("WAYBILL_RABBITMQ_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A config for tests: short retry tiers, so few queues per group.
pub fn config() -> RabbitConfig {
    RabbitConfig::builder(url())
        .retry_tiers([Duration::from_millis(250), Duration::from_secs(1)])
        .confirm_timeout(Duration::from_secs(15))
        .build()
        .expect("valid test config")
}

/// Fails the test with a clear message when no broker answers.
pub async fn require_broker() {
    if let Err(e) = RabbitPublisher::connect(config()).await {
        panic!(
            "RabbitMQ is not reachable at {} ({e}). Start it with `scripts/brokers start rabbitmq` \
             or point WAYBILL_RABBITMQ_URL at a running broker.",
            url()
        );
    }
}

/// The conformance target; remembers every group it subscribed so `cleanup` can remove them.
#[derive(Default)]
pub struct RabbitTarget {
    created: Mutex<Vec<(String, String)>>,
    topics: Mutex<Vec<String>>,
}

impl RabbitTarget {
    /// Deletes the queues and exchanges the run created.
    pub async fn cleanup(&self) {
        let created: Vec<_> = self.created.lock().unwrap().drain(..).collect();
        for (topic, group) in created {
            if let Err(e) = delete_group_topology(&config(), &topic, &group, true).await {
                eprintln!("cleanup of {topic}/{group} failed: {e}");
            }
        }
        let topics: Vec<_> = self.topics.lock().unwrap().drain(..).collect();
        for topic in topics {
            if let Err(e) = delete_topic(&config(), &topic).await {
                eprintln!("cleanup of {topic} failed: {e}");
            }
        }
    }
}

#[async_trait]
impl ConformanceTarget for RabbitTarget {
    fn name(&self) -> String {
        format!("rabbitmq at {}", config().display_url())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }

    async fn prepare_topic(&self, topic: &str) -> Result<(), BoxError> {
        self.topics.lock().unwrap().push(topic.to_owned());
        let publisher = RabbitPublisher::connect(config()).await?;
        publisher.declare_topic(topic).await?;
        publisher.close().await?;
        Ok(())
    }

    async fn publisher(&self) -> Result<Arc<dyn Publisher>, BoxError> {
        Ok(Arc::new(RabbitPublisher::connect(config()).await?))
    }

    async fn subscriber(&self, topic: &str, group: &str) -> Result<Box<dyn Subscriber>, BoxError> {
        self.created
            .lock()
            .unwrap()
            .push((topic.to_owned(), group.to_owned()));
        Ok(Box::new(
            RabbitSubscriber::connect(config(), topic, group).await?,
        ))
    }

    async fn dead_letter_subscriber(
        &self,
        topic: &str,
        group: &str,
    ) -> Result<Box<dyn Subscriber>, BoxError> {
        Ok(Box::new(
            RabbitSubscriber::dead_letters(config(), topic, group).await?,
        ))
    }
}

/// Runs a `rabbitmqctl` command, failing the test with its output if it fails.
pub fn rabbitmqctl(args: &[&str]) {
    let out = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl is installed (Debian package rabbitmq-server)");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Stops and starts the RabbitMQ application inside the running node.
pub async fn restart_app() {
    tokio::task::spawn_blocking(|| {
        rabbitmqctl(&["stop_app"]);
        std::thread::sleep(Duration::from_secs(1));
        rabbitmqctl(&["start_app"]);
        rabbitmqctl(&["await_startup"]);
    })
    .await
    .unwrap();
}

/// Kills the broker's Erlang VM with SIGKILL and starts the server again.
pub async fn kill_and_restart() {
    tokio::task::spawn_blocking(|| {
        let status = std::process::Command::new("pkill")
            .args(["-9", "-f", "beam.smp.*rabbit"])
            .status()
            .expect("pkill");
        assert!(status.success(), "no RabbitMQ node to kill");
        for _ in 0..100 {
            let alive = std::process::Command::new("pgrep")
                .args(["-f", "beam.smp.*rabbit"])
                .status()
                .is_ok_and(|s| s.success());
            if !alive {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let status = std::process::Command::new("rabbitmq-server")
            .arg("-detached")
            .status()
            .expect("rabbitmq-server");
        assert!(status.success(), "rabbitmq-server -detached failed");
        std::thread::sleep(Duration::from_secs(2));
        rabbitmqctl(&["await_startup", "--timeout", "120"]);
    })
    .await
    .unwrap();
}
