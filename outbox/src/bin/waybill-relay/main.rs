//! `waybill-relay`: the outbox relay as a sidecar process, and outbox inspection. See `--help`.

mod commands;
mod monitoring;
mod secret_file;
mod settings;

use std::process::ExitCode;

use clap::Parser;

use settings::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut cli = Cli::parse();
    let command = cli.command.take().unwrap_or(settings::Command::Run);
    let outcome = match cli.settings() {
        Ok(settings) => commands::execute(command, settings).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("waybill-relay: {e}");
            ExitCode::FAILURE
        }
    }
}
