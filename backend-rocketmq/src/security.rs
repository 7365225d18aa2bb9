//! ACL credentials and TLS, applied the same way to every client this backend starts (the
//! publisher, the transactional producer, the subscriber and the admin client).
//!
//! - ACL: rocketmq-client-rust's `AclClientRPCHook` signs every request with the access key
//!   and an HMAC of the request under the secret key (the Java client's scheme, checked by
//!   brokers and name servers with `authenticationEnabled` / ACL 1.0). The secret key itself
//!   is never sent.
//! - TLS: rustls, on every connection to name servers and brokers. Without a CA file the
//!   system's roots are trusted (rustls-native-certs, which also reads `SSL_CERT_FILE`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocketmq_client_rust::{AclClientRPCHook, ClientConfig, SessionCredentials};
use waybill_core::secret::Secret;
use waybill_core::tls_files::TlsFiles;
use waybill_core::ConfigError;

/// What `build()` says when TLS is asked of a build without it.
const TLS_FEATURE_HINT: &str =
    "this build of waybill-rocketmq has no TLS: enable its cargo feature `tls` (`waybill` \
     feature `tls`)";

/// ACL 1.0 credentials: access key and secret key. `Debug` masks the secret key.
#[derive(Clone, PartialEq, Eq)]
pub struct RocketAcl {
    access_key: String,
    secret_key: Secret,
}

impl RocketAcl {
    /// Credentials with `access_key` and `secret_key`.
    pub fn new(access_key: impl Into<String>, secret_key: impl Into<Secret>) -> Self {
        Self {
            access_key: access_key.into(),
            secret_key: secret_key.into(),
        }
    }

    /// The access key (not secret: it is sent with every request).
    pub fn access_key(&self) -> &str {
        &self.access_key
    }
}

impl fmt::Debug for RocketAcl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocketAcl")
            .field("access_key", &self.access_key)
            .field("secret_key", &self.secret_key)
            .finish()
    }
}

/// TLS to name servers and brokers: the CA to trust, an optional client certificate, and
/// whether the server's certificate is verified (on by default).
///
/// ```
/// use waybill_rocketmq::RocketTls;
///
/// let tls = RocketTls::new().ca_file("/etc/rocketmq/ca.pem");
/// assert!(tls.verifies_server());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RocketTls {
    files: TlsFiles,
    verify_server: bool,
}

impl Default for RocketTls {
    fn default() -> Self {
        Self::new()
    }
}

impl RocketTls {
    /// TLS trusting the system's CA certificates, verifying the server.
    pub fn new() -> Self {
        Self::from_files(TlsFiles::default())
    }

    /// TLS with these files, verifying the server.
    pub fn from_files(files: TlsFiles) -> Self {
        Self {
            files,
            verify_server: true,
        }
    }

    /// Trust the CA certificates in this PEM file instead of the system's.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.files.ca_file = Some(path.into());
        self
    }

    /// Present this client certificate and private key, both PEM files (mutual TLS).
    pub fn client_certificate(
        mut self,
        certificate: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.files.client_certificate = Some((certificate.into(), key.into()));
        self
    }

    /// The password of an encrypted client key.
    pub fn key_password(mut self, password: impl Into<Secret>) -> Self {
        self.files.key_password = Some(password.into());
        self
    }

    /// Whether the server's certificate is verified (default `true`; `false` accepts any
    /// certificate, which only encrypts and lets anyone pose as the cluster).
    pub fn verify_server(mut self, verify: bool) -> Self {
        self.verify_server = verify;
        self
    }

    /// Whether the server's certificate is verified.
    pub fn verifies_server(&self) -> bool {
        self.verify_server
    }
}

/// The security settings of a [`crate::RocketConfig`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Security {
    pub(crate) acl: Option<RocketAcl>,
    pub(crate) tls: Option<RocketTls>,
}

impl Security {
    /// The request-signing hook, when ACL credentials are set.
    pub(crate) fn rpc_hook(&self) -> Option<Arc<AclClientRPCHook>> {
        self.acl.as_ref().map(|acl| {
            Arc::new(AclClientRPCHook::new(SessionCredentials::with_keys(
                acl.access_key.as_str(),
                acl.secret_key.expose(),
            )))
        })
    }

    /// Whether connections use TLS.
    pub(crate) fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Writes the TLS settings into a client's configuration.
    pub(crate) fn apply_tls(&self, config: &mut ClientConfig) {
        let Some(tls) = &self.tls else {
            config.set_use_tls(false);
            return;
        };
        install_crypto_provider();
        config.set_use_tls(true);
        let mut settings = config.tls_config().clone();
        settings.test_mode_enable = !tls.verify_server;
        settings.client.auth_server = tls.verify_server;
        let files = &tls.files;
        settings.client.trust_cert_path = files.ca_file.as_ref().map(|p| path_text(p));
        settings.client.cert_path = files.client_certificate.as_ref().map(|(c, _)| path_text(c));
        settings.client.key_path = files.client_certificate.as_ref().map(|(_, k)| path_text(k));
        settings.client.key_password = files.key_password.as_ref().map(|p| p.expose().to_owned());
        config.set_tls_config(settings);
    }

    /// Refuses unreadable files and empty keys.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if let Some(acl) = &self.acl {
            if acl.access_key.trim().is_empty() || acl.secret_key.is_empty() {
                return Err(ConfigError::new(
                    "acl",
                    "the access key and the secret key must not be empty",
                ));
            }
        }
        if let Some(tls) = &self.tls {
            if !cfg!(feature = "tls") {
                return Err(ConfigError::new("tls", TLS_FEATURE_HINT));
            }
            tls.files.check()?;
        }
        Ok(())
    }
}

/// Makes ring the process's default rustls provider unless one is installed already: the
/// RocketMQ transport asks rustls for the default, and a process whose dependencies enable
/// both of rustls's providers has none (rustls then panics on the client's runtime thread).
fn install_crypto_provider() {
    #[cfg(feature = "tls")]
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race against another installer is fine: some provider is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_settings_reach_the_client_configuration() {
        let security = Security {
            acl: None,
            tls: Some(
                RocketTls::new()
                    .ca_file("/ca.pem")
                    .client_certificate("/c.pem", "/c.key")
                    .key_password("key-pass"),
            ),
        };
        let mut config = ClientConfig::default();
        security.apply_tls(&mut config);
        assert!(config.is_use_tls());
        let tls = config.tls_config();
        assert!(tls.enable);
        assert!(tls.client.auth_server && !tls.test_mode_enable);
        assert_eq!(tls.client.trust_cert_path.as_deref(), Some("/ca.pem"));
        assert_eq!(tls.client.cert_path.as_deref(), Some("/c.pem"));
        assert_eq!(tls.client.key_path.as_deref(), Some("/c.key"));
        assert_eq!(tls.client.key_password.as_deref(), Some("key-pass"));

        let unverified = Security {
            acl: None,
            tls: Some(RocketTls::new().verify_server(false)),
        };
        let mut config = ClientConfig::default();
        unverified.apply_tls(&mut config);
        assert!(config.tls_config().test_mode_enable);
        let mut config = ClientConfig::default();
        Security::default().apply_tls(&mut config);
        assert!(!config.is_use_tls());
    }

    #[test]
    fn acl_credentials_make_a_signing_hook_that_hides_the_secret() {
        let security = Security {
            acl: Some(RocketAcl::new("ak-orders", "sk-never-shown")),
            tls: None,
        };
        let hook = security.rpc_hook().expect("a hook");
        assert_eq!(
            hook.session_credentials().access_key().map(|k| k.as_str()),
            Some("ak-orders")
        );
        let printed = format!("{hook:?} {security:?}");
        assert!(!printed.contains("sk-never-shown"), "{printed}");
        assert!(Security::default().rpc_hook().is_none());
    }

    #[test]
    fn empty_keys_and_missing_files_are_refused() {
        let empty = Security {
            acl: Some(RocketAcl::new("ak", "")),
            tls: None,
        };
        assert_eq!(empty.check().unwrap_err().field(), "acl");
        let missing = Security {
            acl: None,
            tls: Some(RocketTls::new().ca_file("/nonexistent/rocket-ca.pem")),
        };
        let err = missing.check().unwrap_err();
        assert_eq!(err.field(), "tls.ca_file");
        assert!(err.to_string().contains("/nonexistent/rocket-ca.pem"));
    }
}
