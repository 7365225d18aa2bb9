//! A TLS endpoint made at test time: it accepts TLS with a given certificate and forwards the
//! decrypted bytes to a plain TCP server (the local Kafka or RabbitMQ broker), so that a client
//! meets whatever certificate a test needs (trusted, from another CA, expired, for another
//! host) in front of a real broker.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::test_certificates::CertifiedKey;

/// A running terminator; dropping it stops it.
pub struct TlsTerminator {
    /// Where clients connect (127.0.0.1).
    pub addr: SocketAddr,
    handshakes: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl TlsTerminator {
    /// Listens on a free port of 127.0.0.1 with `server` as its certificate and forwards every
    /// connection whose handshake succeeds to `upstream`.
    pub async fn start(server: &CertifiedKey, upstream: SocketAddr) -> Self {
        let certs = vec![CertificateDer::from_pem_slice(server.cert_pem.as_bytes())
            .expect("terminator certificate")];
        let key = PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).expect("terminator key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("terminator TLS config");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind terminator");
        let addr = listener.local_addr().expect("terminator address");
        let handshakes = Arc::new(AtomicUsize::new(0));
        let counted = handshakes.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let counted = counted.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(client).await else {
                        return;
                    };
                    counted.fetch_add(1, Ordering::SeqCst);
                    let Ok(mut plain) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        Self {
            addr,
            handshakes,
            task,
        }
    }

    /// TLS handshakes that succeeded so far (a test of a refused certificate asserts 0, so
    /// it knows the refusal came from the client's check).
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}

impl Drop for TlsTerminator {
    fn drop(&mut self) {
        self.task.abort();
    }
}
