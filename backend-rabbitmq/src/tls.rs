//! TLS settings for `amqps://` connections: the CA bundle trusted besides the webpki roots,
//! and a client certificate for mutual TLS. Files are read when a connection is opened, so a
//! renewed certificate is used from the next reconnection on.

use std::path::{Path, PathBuf};

use waybill_core::ConfigError;

/// The cargo feature that builds `amqps://` support.
pub(crate) const TLS_FEATURE_HINT: &str =
    "amqps:// needs TLS, which this build of waybill-rabbitmq lacks: enable its cargo \
     feature `tls`";

/// TLS settings of a [`crate::RabbitConfig`] (paths only: no key material is held, so
/// `Debug` shows nothing secret).
#[derive(Clone, Debug, Default)]
pub(crate) struct TlsFiles {
    /// PEM bundle of CA certificates to trust in addition to the webpki roots.
    pub(crate) ca_file: Option<PathBuf>,
    /// PEM certificate chain and PEM private key presented to the broker.
    pub(crate) client_identity: Option<(PathBuf, PathBuf)>,
    /// The name the broker's certificate is verified for, when not the URL's host.
    pub(crate) server_name: Option<String>,
}

impl TlsFiles {
    /// Whether any setting is given.
    pub(crate) fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.client_identity.is_some() || self.server_name.is_some()
    }

    /// Checks the files exist and hold PEM, so that `build()` fails rather than every
    /// connection attempt.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        #[cfg(feature = "tls")]
        if let Some(name) = &self.server_name {
            rustls::pki_types::ServerName::try_from(name.as_str()).map_err(|e| {
                ConfigError::new(
                    "tls_server_name",
                    format!("{name:?} is not a host name: {e}"),
                )
            })?;
        }
        #[cfg(not(feature = "tls"))]
        if self.server_name.is_some() {
            return Err(ConfigError::new("tls_server_name", TLS_FEATURE_HINT));
        }
        if let Some(ca) = &self.ca_file {
            read_pem("tls_ca_file", ca, "CERTIFICATE")?;
        }
        if let Some((cert, key)) = &self.client_identity {
            read_pem("tls_client_identity", cert, "CERTIFICATE")?;
            read_pem("tls_client_identity", key, "PRIVATE KEY")?;
        }
        Ok(())
    }

    /// lapin's TLS configuration, with the files read now.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the setting and the file when one cannot be read.
    pub(crate) fn lapin_config(&self) -> Result<lapin::tcp::OwnedTLSConfig, ConfigError> {
        let mut config = lapin::tcp::OwnedTLSConfig::default();
        if let Some(ca) = &self.ca_file {
            config.cert_chain = Some(read_pem("tls_ca_file", ca, "CERTIFICATE")?);
        }
        if let Some((cert, key)) = &self.client_identity {
            config.identity = Some(lapin::tcp::OwnedIdentity::PKCS8 {
                pem: read_pem("tls_client_identity", cert, "CERTIFICATE")?.into_bytes(),
                key: read_pem("tls_client_identity", key, "PRIVATE KEY")?.into_bytes(),
            });
        }
        Ok(config)
    }
}

/// The text of `path`, which must contain a PEM block whose label ends with `label`.
fn read_pem(field: &'static str, path: &Path, label: &str) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(field, format!("cannot read {}: {e}", path.display())))?;
    let has_block = text.lines().any(|line| {
        line.strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
            .is_some_and(|found| found.ends_with(label))
    });
    if !has_block {
        return Err(ConfigError::new(
            field,
            format!("{} holds no PEM {label}", path.display()),
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_non_pem_files_are_named() {
        let dir = std::env::temp_dir().join(format!("waybill-rabbit-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_pem = dir.join("ca.txt");
        std::fs::write(&not_pem, "hello").unwrap();
        let files = TlsFiles {
            ca_file: Some(not_pem),
            ..TlsFiles::default()
        };
        let err = files.validate().unwrap_err();
        assert_eq!(err.field(), "tls_ca_file");
        assert!(err.to_string().contains("ca.txt"), "{err}");
        let files = TlsFiles {
            client_identity: Some((dir.join("nope.crt"), dir.join("nope.key"))),
            ..TlsFiles::default()
        };
        let err = files.validate().unwrap_err();
        assert_eq!(err.field(), "tls_client_identity");
        assert!(err.to_string().contains("nope.crt"), "{err}");
    }
}
