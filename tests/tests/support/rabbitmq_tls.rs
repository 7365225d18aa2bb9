//! The RabbitMQ TLS listener the tests use (`scripts/rabbitmq-tls`) and the
//! certificates that script made.

use std::path::PathBuf;

/// The folder with `ca.pem`, `client.pem` and `client.key`: `WAYBILL_RABBITMQ_TLS_DIR`, or
/// `~/.cache/waybill/tls/rabbitmq` as `scripts/rabbitmq-tls` makes it.
pub fn tls_dir() -> PathBuf {
    match std::env::var_os("WAYBILL_RABBITMQ_TLS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
            .join(".cache/waybill/tls/rabbitmq"),
    }
}

/// The listener's address: `WAYBILL_RABBITMQ_TLS_ADDR`, or `localhost:5671`. Its certificate
/// must name the host (the script's names only `localhost`).
pub fn address() -> String {
    std::env::var("WAYBILL_RABBITMQ_TLS_ADDR").unwrap_or_else(|_| "localhost:5671".to_owned())
}

/// An `amqps://` URL to the listener's `port` on `host`, logging in as guest with `password`.
pub fn url_for(host: &str, password: &str) -> String {
    let port = address()
        .rsplit_once(':')
        .map(|(_, p)| p.to_owned())
        .unwrap_or_else(|| "5671".into());
    format!("amqps://guest:{password}@{host}:{port}/%2f")
}

/// The URL of the listener as configured (guest/guest).
pub fn url() -> String {
    let host = address()
        .rsplit_once(':')
        .map(|(h, _)| h.to_owned())
        .unwrap_or_else(|| "localhost".into());
    url_for(&host, "guest")
}

/// Fails the test with how to start the listener when it or its certificates are missing.
pub fn require_listener() {
    let ca = tls_dir().join("ca.pem");
    let listening = std::net::TcpStream::connect(address()).is_ok();
    if !listening || !ca.exists() {
        panic!(
            "the RabbitMQ TLS listener is not ready (listening on {}: {listening}; {} exists: \
             {}). Start it with `scripts/rabbitmq-tls`, or set \
             WAYBILL_RABBITMQ_TLS_ADDR and WAYBILL_RABBITMQ_TLS_DIR (ca.pem, client.pem, \
             client.key) for another broker.",
            address(),
            ca.display(),
            ca.exists()
        );
    }
}

/// The HTTPS management listener's address (`scripts/rabbitmq-tls` opens it with the same
/// certificate): `WAYBILL_RABBITMQ_MANAGEMENT_TLS_ADDR`, or `localhost:15671`.
pub fn management_address() -> String {
    std::env::var("WAYBILL_RABBITMQ_MANAGEMENT_TLS_ADDR")
        .unwrap_or_else(|_| "localhost:15671".to_owned())
}

/// Fails the test with how to start it when the HTTPS management listener is missing.
pub fn require_management_listener() {
    if std::net::TcpStream::connect(management_address()).is_err() {
        panic!(
            "the RabbitMQ HTTPS management listener does not answer on {}. Start it with \
             `scripts/rabbitmq-tls`, or set WAYBILL_RABBITMQ_MANAGEMENT_TLS_ADDR for another \
             broker.",
            management_address()
        );
    }
}
