//! Redis for the store tests: the shared server, and private servers a test may kill.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use waybill_redis::{RedisIdempotencyStore, RedisStoreConfig};

/// The shared server: `WAYBILL_REDIS_URL`, or the local default.
pub fn redis_url() -> String {
    std::env::var("WAYBILL_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A store on the shared server, keys under `prefix`, markers kept for `retention`; fails the
/// test with the command that starts Redis when it is not reachable.
pub async fn shared_store(prefix: &str, retention: Duration) -> RedisIdempotencyStore {
    let config = RedisStoreConfig::builder(redis_url())
        .key_prefix(prefix)
        .retention(retention)
        .build()
        .expect("valid Redis settings");
    match RedisIdempotencyStore::connect(config).await {
        Ok(store) => store,
        Err(e) => panic!(
            "{e}. The local server starts with `scripts/brokers start redis`; or point \
             WAYBILL_REDIS_URL at one."
        ),
    }
}

/// A Redis server of this test's own on a free loopback port, keeping nothing on disk, so the
/// test can kill and restart it without disturbing others.
pub struct OwnRedis {
    port: u16,
    child: Child,
}

impl OwnRedis {
    /// Starts one and waits until it answers.
    pub async fn start() -> Self {
        Self::start_on(super::private_postgres::free_port()).await
    }

    async fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("redis-server could not be started ({e}): apt-get install -y redis-server")
            });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server on port {port} did not answer within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { port, child }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the server runs")
    }

    /// SIGKILLs it (everything it held is gone: it keeps nothing on disk), leaves it down for
    /// `down`, and starts a new one on the same port; returns the old and new process ids.
    pub async fn kill_and_restart(&mut self, down: Duration) -> (u32, u32) {
        let before = self.pid();
        self.child.kill().await.expect("SIGKILL redis-server");
        tokio::time::sleep(down).await;
        let restarted = Self::start_on(self.port).await;
        let after = restarted.pid();
        *self = restarted;
        (before, after)
    }
}
