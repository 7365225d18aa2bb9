//! The TLS settings of the management API's HTTP client: rustls with the ring provider, the
//! webpki roots and, for a broker whose certificate a private CA signed, that CA's PEM bundle.
//!
//! The client is always handed a ready configuration rather than left to pick one: with
//! reqwest's `rustls-no-provider` feature (this crate's choice, so that only ring is built)
//! a client without one would need a process-wide provider installed first, and another crate
//! of the same build may turn on reqwest's own provider; a ready configuration behaves the
//! same in every build.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use waybill_core::ConfigError;

/// A rustls client configuration trusting the webpki roots and the certificates of
/// `ca_file` (read now).
///
/// # Errors
/// [`ConfigError`] on field `management_url` when `ca_file` cannot be read or holds no PEM
/// certificate.
pub(crate) fn client_config(ca_file: Option<&Path>) -> Result<ClientConfig, ConfigError> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned());
    if let Some(path) = ca_file {
        let refused = |reason: String| {
            ConfigError::new(
                "management_url",
                format!("ca_file {}: {reason}", path.display()),
            )
        };
        let pem = std::fs::read(path).map_err(|e| refused(format!("cannot be read: {e}")))?;
        let certificates = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| refused(format!("is not PEM: {e}")))?;
        if certificates.is_empty() {
            return Err(refused("holds no PEM CERTIFICATE".to_owned()));
        }
        let (added, _ignored) = roots.add_parsable_certificates(certificates);
        if added == 0 {
            return Err(refused("holds no certificate rustls can use".to_owned()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new("management_url", e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_ca_file_is_named() {
        let missing = client_config(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert_eq!(missing.field(), "management_url");
        assert!(
            missing.to_string().contains("/nonexistent/ca.pem"),
            "{missing}"
        );
        let dir = std::env::temp_dir().join(format!("waybill-mgmt-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = client_config(Some(&empty)).unwrap_err();
        assert!(err.to_string().contains("no PEM CERTIFICATE"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_webpki_roots_alone_make_a_configuration() {
        assert!(client_config(None).is_ok());
    }
}
