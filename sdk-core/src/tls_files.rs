//! The PEM files a TLS client is configured with, shared by the backends whose client
//! libraries take file paths (Kafka, RocketMQ).

use std::path::{Path, PathBuf};

use crate::secret::Secret;
use crate::ConfigError;

/// A CA bundle to trust instead of the system's, a client certificate with its key (mutual
/// TLS), and the key's password. `Debug` masks the password.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM file of the CA certificates to trust (`None`: the system's).
    pub ca_file: Option<PathBuf>,
    /// PEM files of the client certificate and its private key.
    pub client_certificate: Option<(PathBuf, PathBuf)>,
    /// The password of an encrypted private key.
    pub key_password: Option<Secret>,
}

impl TlsFiles {
    /// Refuses files that cannot be read, naming the setting and the path.
    ///
    /// # Errors
    /// [`ConfigError`] with field `tls.ca_file` or `tls.client_certificate`.
    pub fn check(&self) -> Result<(), ConfigError> {
        if let Some(ca) = &self.ca_file {
            readable("tls.ca_file", ca)?;
        }
        if let Some((cert, key)) = &self.client_certificate {
            readable("tls.client_certificate", cert)?;
            readable("tls.client_certificate", key)?;
        }
        Ok(())
    }
}

fn readable(field: &'static str, path: &Path) -> Result<(), ConfigError> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| ConfigError::new(field, format!("cannot read {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_files_are_named() {
        let files = TlsFiles {
            client_certificate: Some(("/nonexistent/c.pem".into(), "/nonexistent/c.key".into())),
            key_password: Some(Secret::new("key-pass-hidden")),
            ..TlsFiles::default()
        };
        let err = files.check().unwrap_err();
        assert_eq!(err.field(), "tls.client_certificate");
        assert!(err.to_string().contains("/nonexistent/c.pem"));
        assert!(!format!("{files:?}").contains("key-pass-hidden"));
        TlsFiles::default().check().unwrap();
    }
}
