//! TLS failures between the outbox and its database: which ones a retry cannot fix, and how to
//! say what went wrong.

/// The cargo feature that builds the database clients with TLS.
pub(crate) const TLS_FEATURE_HINT: &str =
    "this build of waybill-outbox has no TLS: enable its cargo feature `tls` (on by default; \
     it is off when `default-features = false`), or connect without TLS \
     (sslmode=disable or prefer on PostgreSQL, ssl-mode=disabled or preferred on MySQL)";

/// Makes ring the process's default rustls provider unless one is installed already (a
/// process whose dependencies enable both of rustls's providers has no default otherwise, and
/// rustls panics when asked for it).
#[cfg(feature = "tls")]
pub(crate) fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race against another installer is fine: some provider is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// A TLS failure found in a sqlx error.
pub(crate) enum TlsFailure {
    /// The connection options require TLS and sqlx was built without it.
    NotBuilt,
    /// The handshake failed in a way a retry repeats: the reason, readable.
    Rejected(String),
}

/// The TLS failure behind `error`, if it is one.
///
/// sqlx reports its own TLS setup failures (no TLS built in, an unreadable CA bundle or client
/// key) as `Error::Tls`, and a failed handshake as `Error::Io` wrapping the `rustls::Error`.
pub(crate) fn tls_failure(error: &sqlx::Error) -> Option<TlsFailure> {
    match error {
        sqlx::Error::Tls(e) => {
            if e.to_string().contains("without TLS support") {
                Some(TlsFailure::NotBuilt)
            } else {
                Some(TlsFailure::Rejected(format!(
                    "the TLS settings are unusable: {e}"
                )))
            }
        }
        sqlx::Error::Io(io) => handshake_failure(io),
        _ => None,
    }
}

#[cfg(feature = "tls")]
fn handshake_failure(io: &std::io::Error) -> Option<TlsFailure> {
    let mut cause = io
        .get_ref()
        .map(|e| e as &(dyn std::error::Error + 'static));
    while let Some(e) = cause {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return explain(tls).map(TlsFailure::Rejected);
        }
        cause = e.source();
    }
    None
}

#[cfg(not(feature = "tls"))]
fn handshake_failure(_io: &std::io::Error) -> Option<TlsFailure> {
    None
}

/// What a rustls handshake error means for whoever configures the connection, when the same
/// handshake would fail again (`None` otherwise).
#[cfg(feature = "tls")]
fn explain(error: &rustls::Error) -> Option<String> {
    use rustls::{CertificateError as C, Error as E};
    let what = match error {
        E::InvalidCertificate(C::UnknownIssuer) => {
            "certificate verification failed: the server's certificate is not signed by a \
             trusted CA (name the CA bundle with sslrootcert=FILE)"
        }
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "certificate verification failed: the server's certificate is not valid for the \
             host name in the URL (sslmode=verify-full checks it against the certificate's \
             subject alternative names; connect by a name the certificate lists)"
        }
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "certificate verification failed: the server's certificate has expired"
        }
        E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "certificate verification failed: the server's certificate is not valid yet"
        }
        E::InvalidCertificate(_) => "certificate verification failed",
        E::AlertReceived(alert) if refuses_handshake(*alert) => {
            "the server refused the TLS handshake (it requires a client certificate, or does \
             not accept the one given)"
        }
        E::PeerIncompatible(_) | E::NoCertificatesPresented => {
            "the TLS handshake failed: no protocol version, cipher suite or certificate both \
             sides accept"
        }
        // Other TLS errors (a connection cut mid-record, a bad MAC) may not recur: left to the
        // caller's classification of I/O errors.
        _ => return None,
    };
    Some(format!("{what} ({error})"))
}

/// Alerts a peer sends when it will refuse the same handshake again.
#[cfg(feature = "tls")]
fn refuses_handshake(alert: rustls::AlertDescription) -> bool {
    use rustls::AlertDescription as A;
    matches!(
        alert,
        A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::AccessDenied
            | A::CertificateRequired
            | A::HandshakeFailure
            | A::ProtocolVersion
            | A::InsufficientSecurity
    )
}
