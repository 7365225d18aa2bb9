//! `waybill`: the operator's program. `waybill relay` runs the outbox relay as a sidecar,
//! `waybill outbox …` inspects and repairs the outbox, `waybill dlq …` lists, replays and
//! purges a consumer group's dead letters on the broker, `waybill holds …` lists and releases
//! the keys a group holds behind its dead messages, `waybill preflight` checks what the
//! broker's settings do to the guarantee, `waybill audit` compares what the relay sent with
//! what the consumer groups applied, `waybill chaos` runs a chaos scenario against the
//! operator's own stack. See `--help` and the README's
//! operator's section; the exit codes are documented on [`exit::Failure`].

mod audit;
mod broker;
mod chaos;
mod database;
mod dlq;
mod exit;
mod holds;
mod monitoring;
mod outbox;
mod output;
mod preflight;
mod relay;
mod secret_file;
mod settings;

use std::process::ExitCode;

use clap::Parser;

use exit::{Failure, Outcome};
use settings::{Cli, Command, RelayFlags};

/// What is logged unless `RUST_LOG` says otherwise: waybill's own information, and only the
/// warnings of the RocketMQ client, whose start and stop chatter at the information level
/// would bury a command's output.
const DEFAULT_LOG_FILTER: &str = "info,rocketmq_client_rust=warn,rocketmq_transport=warn";

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| DEFAULT_LOG_FILTER.into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match execute(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("waybill: {failure}");
            failure.exit_code()
        }
    }
}

async fn execute(cli: Cli) -> Outcome {
    match cli.command {
        Command::Relay(args) => {
            let settings = args.database.settings(args.relay).map_err(Failure::Usage)?;
            relay::run(settings).await
        }
        Command::Outbox(args) => {
            let settings = args
                .database
                .settings(RelayFlags::default())
                .map_err(Failure::Usage)?;
            outbox::run(args.command, settings, cli.json).await
        }
        Command::Dlq(args) => dlq::run(args, cli.json).await,
        Command::Holds(args) => holds::run(args, cli.json).await,
        Command::Preflight(args) => preflight::run(args, cli.json).await,
        Command::Audit(args) => audit::run(args, cli.json).await,
        Command::Chaos(args) => chaos::run(args, cli.json).await,
    }
}
