//! `amqps://` with a TLS server name other than the URL's host (a broker reached by an
//! address its certificate does not list, e.g. through a tunnel or by IP address): the TCP
//! connection goes to the URL's host, the certificate is verified for the server name.

use lapin::tcp::{AsyncTcpStream, RustlsConnector, RustlsConnectorConfig};
use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::tls::TlsFiles;

/// Connects to `url`'s host and port, verifying the broker's certificate for `server_name`
/// with the roots and client identity of `tls` (files read now).
///
/// # Errors
/// lapin's errors: an I/O error for an unreadable or invalid TLS file, a failed name lookup
/// or TCP connection, or a failed handshake (wrapping the `rustls::Error`); protocol errors
/// from the AMQP handshake (credentials, vhost).
pub(crate) async fn connect(
    url: &str,
    server_name: &str,
    tls: &TlsFiles,
    properties: ConnectionProperties,
) -> lapin::Result<Connection> {
    let uri: AMQPUri = url
        .parse()
        .map_err(|e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let connector = connector(tls)?;
    let server_name = server_name.to_owned();
    let runtime = lapin::runtime::default_runtime()?;
    Connection::connector(
        uri,
        runtime,
        async move |uri: AMQPUri, runtime| {
            let addresses: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((uri.authority.host.as_str(), uri.authority.port))
                    .await?
                    .collect();
            let stream = AsyncTcpStream::connect(&runtime, addresses).await?;
            Ok(stream.into_rustls(&connector, &server_name).await?)
        },
        properties,
    )
    .await
}

/// A rustls connector trusting the webpki roots and `tls`'s CA bundle, presenting its client
/// identity when it has one.
fn connector(tls: &TlsFiles) -> std::io::Result<RustlsConnector> {
    let invalid = |e: rustls::pki_types::pem::Error| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
    };
    let mut config = RustlsConnectorConfig::new_with_webpki_root_certs();
    if let Some(ca) = &tls.ca_file {
        let pem = std::fs::read(ca)?;
        let certificates = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        config.add_parsable_certificates(certificates);
    }
    match &tls.client_identity {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(&std::fs::read(cert)?)
                .collect::<Result<Vec<_>, _>>()
                .map_err(invalid)?;
            let key = PrivateKeyDer::from_pem_slice(&std::fs::read(key)?).map_err(invalid)?;
            config.connector_with_single_cert(chain, key)
        }
        None => config.connector_with_no_client_auth(),
    }
}
