//! Opening connections with a bounded wait and a clear error.

use lapin::{Connection, ConnectionProperties};
use waybill_core::BrokerError;

use crate::config::RabbitConfig;
use crate::error_class::{describe, failure_class};

/// Connects to the configured broker, naming the connection `name` in the management UI.
///
/// lapin's own auto-recovery stays off: the publisher and subscriber reconnect themselves, so
/// that unconfirmed publishes are reported instead of silently lost.
///
/// # Errors
/// A permanent [`BrokerError`] for refused credentials, an unknown vhost, a broker certificate
/// that fails verification (the message says which check failed) or a TLS file that can no
/// longer be read; a transient one when the broker is unreachable or does not answer within
/// the connect timeout. The URL appears with its password masked.
pub(crate) async fn connect(config: &RabbitConfig, name: &str) -> Result<Connection, BrokerError> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    let tls = config.tls.lapin_config().map_err(|e| {
        BrokerError::permanent(
            "connect",
            format!("cannot connect to {}: {e}", config.display_url()),
        )
    })?;
    let runtime = lapin::runtime::default_runtime().map_err(|e| {
        BrokerError::permanent("connect", format!("no async runtime for lapin: {e}"))
    })?;
    let connecting = async {
        #[cfg(feature = "tls")]
        if let Some(name) = &config.tls.server_name {
            return crate::tls_server_name::connect(&config.url, name, &config.tls, properties)
                .await;
        }
        Connection::connect_with_config(&config.url, properties, tls, runtime).await
    };
    match tokio::time::timeout(config.connect_timeout, connecting).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => Err(BrokerError::new(
            failure_class(&e),
            "connect",
            format!(
                "cannot connect to {}: {}",
                config.display_url(),
                describe(&e)
            ),
        )
        .with_source(e)),
        Err(_) => Err(BrokerError::transient(
            "connect",
            format!(
                "no answer from {} within {:?}",
                config.display_url(),
                config.connect_timeout
            ),
        )),
    }
}
