//! Sidecar settings from a TOML file, the environment and flags (flags win, then environment,
//! then file, then defaults).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

/// What the sidecar was asked to do.
pub enum Command {
    /// Apply the migrations and exit.
    Migrate,
    /// Relay until SIGTERM or SIGINT.
    Run,
    /// Print the usage.
    Help,
}

/// The settings, validated.
#[derive(Debug)]
pub struct Settings {
    pub database_url: String,
    pub broker_url: String,
    pub batch_size: usize,
    pub poll_interval: Duration,
    pub max_attempts: u32,
    pub listen: SocketAddr,
    pub migrate: bool,
}

/// The TOML file's shape (every key optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    database_url: Option<String>,
    broker_url: Option<String>,
    batch_size: Option<usize>,
    poll_interval_ms: Option<u64>,
    max_attempts: Option<u32>,
    listen: Option<String>,
    migrate: Option<bool>,
}

pub const USAGE: &str = "\
waybill-relay: publishes the transactional outbox of a PostgreSQL database to a broker.

usage: waybill-relay [run|migrate] [--config FILE] [--database-url URL] [--broker-url URL]
                     [--batch-size N] [--poll-interval-ms MS] [--max-attempts N]
                     [--listen ADDR] [--migrate]

Each setting can also come from the environment (WAYBILL_DATABASE_URL, WAYBILL_BROKER_URL,
WAYBILL_BATCH_SIZE, WAYBILL_POLL_INTERVAL_MS, WAYBILL_MAX_ATTEMPTS, WAYBILL_LISTEN) or the
TOML file (database_url, broker_url, batch_size, poll_interval_ms, max_attempts, listen,
migrate). Broker URLs: amqp:// and amqps:// (RabbitMQ).
GET /metrics (Prometheus) and /healthz are served on --listen (default 127.0.0.1:9464).
SIGTERM or SIGINT: the batch in flight finishes, then the process exits 0.";

/// Parses the command line (without the program name) and the environment.
pub fn parse(args: Vec<String>) -> Result<(Command, Settings), String> {
    let mut command = Command::Run;
    let mut flags: Vec<(String, String)> = Vec::new();
    let mut config_file = None;
    let mut migrate_flag = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "run" => command = Command::Run,
            "migrate" => command = Command::Migrate,
            "-h" | "--help" => command = Command::Help,
            "--migrate" => migrate_flag = true,
            "--config" => config_file = Some(args.next().ok_or("--config needs a file")?),
            flag if flag.starts_with("--") => {
                let value = args.next().ok_or(format!("{flag} needs a value"))?;
                flags.push((flag.trim_start_matches("--").replace('-', "_"), value));
            }
            other => return Err(format!("unexpected argument {other:?}; see --help")),
        }
    }
    let file = match &config_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read config file {path}: {e}"))?;
            toml::from_str::<FileSettings>(&text)
                .map_err(|e| format!("invalid config file {path}: {e}"))?
        }
        None => FileSettings::default(),
    };
    let pick = |name: &str, from_file: Option<String>| -> Option<String> {
        flags
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(format!("WAYBILL_{}", name.to_uppercase())).ok())
            .or(from_file)
    };
    for (name, _) in &flags {
        if ![
            "database_url",
            "broker_url",
            "batch_size",
            "poll_interval_ms",
            "max_attempts",
            "listen",
        ]
        .contains(&name.as_str())
        {
            return Err(format!(
                "unknown flag --{}; see --help",
                name.replace('_', "-")
            ));
        }
    }
    let number = |name: &str, text: Option<String>, default: u64| -> Result<u64, String> {
        match text {
            None => Ok(default),
            Some(t) => t
                .parse::<u64>()
                .map_err(|_| format!("{name}: {t:?} is not a non-negative number")),
        }
    };
    let database_url = pick("database_url", file.database_url)
        .ok_or("database_url is required (--database-url, WAYBILL_DATABASE_URL or the file)")?;
    let broker_url = pick("broker_url", file.broker_url).unwrap_or_default();
    if matches!(command, Command::Run) && broker_url.is_empty() {
        return Err("broker_url is required (--broker-url, WAYBILL_BROKER_URL or the file)".into());
    }
    let batch_size = number(
        "batch_size",
        pick("batch_size", file.batch_size.map(|n| n.to_string())),
        500,
    )?;
    let poll_ms = number(
        "poll_interval_ms",
        pick(
            "poll_interval_ms",
            file.poll_interval_ms.map(|n| n.to_string()),
        ),
        1000,
    )?;
    let max_attempts = number(
        "max_attempts",
        pick("max_attempts", file.max_attempts.map(|n| n.to_string())),
        10,
    )?;
    let listen_text = pick("listen", file.listen).unwrap_or_else(|| "127.0.0.1:9464".into());
    let listen = listen_text
        .parse()
        .map_err(|_| format!("listen: {listen_text:?} is not an address like 127.0.0.1:9464"))?;
    Ok((
        command,
        Settings {
            database_url,
            broker_url,
            batch_size: usize::try_from(batch_size).unwrap_or(usize::MAX),
            poll_interval: Duration::from_millis(poll_ms),
            max_attempts: u32::try_from(max_attempts).unwrap_or(u32::MAX),
            listen,
            migrate: migrate_flag || file.migrate.unwrap_or(false),
        },
    ))
}
