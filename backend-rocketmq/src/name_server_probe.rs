//! Whether any name server of a configuration accepts a TCP connection: the publisher's health
//! check (the client exposes no request that needs neither a topic nor a group).

use std::time::Duration;

use tokio::net::TcpStream;

use crate::config::RocketConfig;

/// How long one name server gets to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// `Ok` when at least one name server accepts a TCP connection within 3 s; else an error that
/// names every name server and what each did.
pub(crate) async fn any_name_server_answers(config: &RocketConfig) -> Result<(), String> {
    let mut failures = Vec::new();
    for address in config
        .name_server
        .split(';')
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => failures.push(format!("{address}: {e}")),
            Err(_) => failures.push(format!("{address}: no answer within {CONNECT_TIMEOUT:?}")),
        }
    }
    Err(format!(
        "no RocketMQ name server of {} accepts connections ({})",
        config.described_name_servers(),
        failures.join(", ")
    ))
}
