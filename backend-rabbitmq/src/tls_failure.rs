//! TLS handshake failures in lapin errors: found under the I/O error lapin reports, they are
//! permanent (the same certificates fail the same way) and are described in words.

/// A readable description of the TLS failure behind `error`, if it is one that repeats on
/// every attempt (a certificate failing verification, a handshake the peer refuses).
#[cfg(feature = "tls")]
pub(crate) fn tls_rejection(error: &lapin::Error) -> Option<String> {
    let lapin::ErrorKind::IOError(io) = error.kind() else {
        return None;
    };
    let mut cause = io
        .get_ref()
        .map(|e| e as &(dyn std::error::Error + 'static));
    while let Some(e) = cause {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return explain(tls);
        }
        cause = e.source();
    }
    None
}

/// Without the `tls` feature no handshake happens, so no error is a TLS one.
#[cfg(not(feature = "tls"))]
pub(crate) fn tls_rejection(_error: &lapin::Error) -> Option<String> {
    None
}

/// What a rustls handshake error means for whoever configures the connection, when the same
/// handshake would fail again (`None` otherwise).
#[cfg(feature = "tls")]
fn explain(error: &rustls::Error) -> Option<String> {
    use rustls::{CertificateError as C, Error as E};
    let what = match error {
        E::InvalidCertificate(C::UnknownIssuer) => {
            "certificate verification failed: the broker's certificate is not signed by a \
             trusted CA (add its CA with RabbitConfigBuilder::tls_ca_file)"
        }
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "certificate verification failed: the broker's certificate is not valid for the \
             host name in the URL"
        }
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "certificate verification failed: the broker's certificate has expired"
        }
        E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "certificate verification failed: the broker's certificate is not valid yet"
        }
        E::InvalidCertificate(_) => "certificate verification failed",
        E::AlertReceived(alert) if refuses_handshake(*alert) => {
            "the broker refused the TLS handshake (it requires a client certificate, or does \
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
