//! TLS and SASL: typed settings mapped onto librdkafka's `security.protocol`, `ssl.*` and
//! `sasl.*` properties, checked against what this build of librdkafka supports.

use std::path::PathBuf;

use rdkafka::ClientConfig;
use waybill_core::secret::Secret;
use waybill_core::tls_files::TlsFiles;
use waybill_core::ConfigError;

/// The cargo feature that builds librdkafka with OpenSSL (TLS and SCRAM).
pub(crate) const TLS_FEATURE_HINT: &str =
    "enable waybill-kafka's cargo feature `tls` (`waybill` feature `tls`), which builds \
     librdkafka with OpenSSL";

/// A SASL mechanism librdkafka implements without an external SASL library.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslMechanism {
    /// `PLAIN`: the password travels as it is, so use it only inside TLS (`SASL_SSL`).
    Plain,
    /// `SCRAM-SHA-256` (needs the `tls` feature: librdkafka computes SCRAM with OpenSSL).
    ScramSha256,
    /// `SCRAM-SHA-512` (needs the `tls` feature, as above).
    ScramSha512,
}

impl SaslMechanism {
    /// The name librdkafka and the brokers use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// The entry of librdkafka's `builtin.features` that this mechanism needs.
    fn builtin_feature(self) -> &'static str {
        match self {
            Self::Plain => "sasl_plain",
            Self::ScramSha256 | Self::ScramSha512 => "sasl_scram",
        }
    }
}

/// A SASL login: mechanism, user name and password. `Debug` masks the password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaslLogin {
    /// The mechanism.
    pub mechanism: SaslMechanism,
    /// The user name.
    pub username: String,
    /// The password (or API secret, on hosted clusters).
    pub password: Secret,
}

/// TLS to the brokers: which CA to trust, an optional client certificate (mutual TLS), and
/// whether the broker's host name is checked against its certificate (on by default).
///
/// ```
/// use waybill_kafka::KafkaTls;
///
/// let tls = KafkaTls::new()
///     .ca_file("/etc/kafka/ca.pem")
///     .client_certificate("/etc/kafka/client.pem", "/etc/kafka/client.key");
/// assert!(tls.verifies_host_name());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaTls {
    files: TlsFiles,
    verify_host_name: bool,
}

impl Default for KafkaTls {
    fn default() -> Self {
        Self::new()
    }
}

impl KafkaTls {
    /// TLS trusting the system's CA certificates, with host name verification.
    pub fn new() -> Self {
        Self::from_files(TlsFiles::default())
    }

    /// TLS with these files, with host name verification.
    pub fn from_files(files: TlsFiles) -> Self {
        Self {
            files,
            verify_host_name: true,
        }
    }

    /// Trust the CA certificates in this PEM file instead of the system's (`ssl.ca.location`).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.files.ca_file = Some(path.into());
        self
    }

    /// Present this client certificate and private key, both PEM files (mutual TLS;
    /// `ssl.certificate.location`, `ssl.key.location`).
    pub fn client_certificate(
        mut self,
        certificate: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.files.client_certificate = Some((certificate.into(), key.into()));
        self
    }

    /// The password of an encrypted client key (`ssl.key.password`).
    pub fn key_password(mut self, password: impl Into<Secret>) -> Self {
        self.files.key_password = Some(password.into());
        self
    }

    /// Whether the broker's certificate must name the host connected to (default `true`;
    /// turning it off lets anyone holding a certificate from the CA pose as a broker).
    pub fn verify_host_name(mut self, verify: bool) -> Self {
        self.verify_host_name = verify;
        self
    }

    /// Whether host names are verified.
    pub fn verifies_host_name(&self) -> bool {
        self.verify_host_name
    }
}

/// The security settings of a [`crate::KafkaConfig`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Security {
    pub(crate) tls: Option<KafkaTls>,
    pub(crate) sasl: Option<SaslLogin>,
}

/// librdkafka properties that only the typed settings may set.
pub(crate) const TYPED_PROPERTIES: [&str; 10] = [
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.key.password",
    "ssl.endpoint.identification.algorithm",
];

/// Whether a librdkafka property holds a secret (its value is masked wherever it is shown).
pub(crate) fn is_secret_property(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "token", ".pem", "key"]
        .iter()
        .any(|word| key.contains(word))
        && key != "ssl.key.location"
}

impl Security {
    /// `security.protocol` for these settings.
    pub(crate) fn protocol(&self) -> &'static str {
        match (&self.tls, &self.sasl) {
            (None, None) => "plaintext",
            (Some(_), None) => "ssl",
            (None, Some(_)) => "sasl_plaintext",
            (Some(_), Some(_)) => "sasl_ssl",
        }
    }

    /// Writes the settings into `config`.
    pub(crate) fn apply(&self, config: &mut ClientConfig) {
        config.set("security.protocol", self.protocol());
        if let Some(tls) = &self.tls {
            let files = &tls.files;
            if let Some(ca) = &files.ca_file {
                config.set("ssl.ca.location", ca.to_string_lossy());
            }
            if let Some((cert, key)) = &files.client_certificate {
                config.set("ssl.certificate.location", cert.to_string_lossy());
                config.set("ssl.key.location", key.to_string_lossy());
            }
            if let Some(password) = &files.key_password {
                config.set("ssl.key.password", password.expose());
            }
            config.set(
                "ssl.endpoint.identification.algorithm",
                if tls.verify_host_name {
                    "https"
                } else {
                    "none"
                },
            );
        }
        if let Some(sasl) = &self.sasl {
            config
                .set("sasl.mechanism", sasl.mechanism.name())
                .set("sasl.username", &sasl.username)
                .set("sasl.password", sasl.password.expose());
        }
    }

    /// Refuses settings that cannot work: unreadable files, an empty user name, or what the
    /// librdkafka of this build does not support (`builtin` is its `builtin.features` list).
    pub(crate) fn check(&self, builtin: &str) -> Result<(), ConfigError> {
        let has = |feature: &str| builtin.split(',').any(|f| f.trim() == feature);
        if let Some(tls) = &self.tls {
            if !has("ssl") {
                return Err(ConfigError::new(
                    "tls",
                    format!("this build of librdkafka has no TLS: {TLS_FEATURE_HINT}"),
                ));
            }
            tls.files.check()?;
        }
        if let Some(sasl) = &self.sasl {
            if sasl.username.trim().is_empty() {
                return Err(ConfigError::new("sasl", "the user name is empty"));
            }
            if !has(sasl.mechanism.builtin_feature()) {
                return Err(ConfigError::new(
                    "sasl",
                    format!(
                        "this build of librdkafka does not support SASL {}: {TLS_FEATURE_HINT}",
                        sasl.mechanism.name()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The `builtin.features` of the linked librdkafka (`ssl,sasl_plain,sasl_scram,...`).
pub(crate) fn builtin_features() -> String {
    ClientConfig::new()
        .create_native_config()
        .and_then(|native| native.get("builtin.features"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(mechanism: SaslMechanism) -> SaslLogin {
        SaslLogin {
            mechanism,
            username: "app".into(),
            password: Secret::new("pa55word-never-shown"),
        }
    }

    fn properties(security: &Security) -> Vec<(String, String)> {
        let mut config = ClientConfig::new();
        security.apply(&mut config);
        // `config_map` sanitises secrets; `get` gives what librdkafka receives.
        let mut pairs: Vec<_> = config
            .config_map()
            .keys()
            .map(|k| (k.to_string(), config.get(k).unwrap_or_default().to_owned()))
            .collect();
        pairs.sort();
        pairs
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    #[test]
    fn the_protocol_follows_from_what_is_set() {
        let tls = Some(KafkaTls::new());
        let sasl = Some(login(SaslMechanism::Plain));
        let protocol = |tls: &Option<KafkaTls>, sasl: &Option<SaslLogin>| {
            Security {
                tls: tls.clone(),
                sasl: sasl.clone(),
            }
            .protocol()
        };
        assert_eq!(protocol(&None, &None), "plaintext");
        assert_eq!(protocol(&tls, &None), "ssl");
        assert_eq!(protocol(&None, &sasl), "sasl_plaintext");
        assert_eq!(protocol(&tls, &sasl), "sasl_ssl");
    }

    #[test]
    fn sasl_ssl_maps_onto_librdkafka_properties() {
        let security = Security {
            tls: Some(
                KafkaTls::new()
                    .ca_file("/ca.pem")
                    .client_certificate("/c.pem", "/c.key")
                    .key_password("keypass"),
            ),
            sasl: Some(login(SaslMechanism::ScramSha512)),
        };
        assert_eq!(
            properties(&security),
            vec![
                pair("sasl.mechanism", "SCRAM-SHA-512"),
                pair("sasl.password", "pa55word-never-shown"),
                pair("sasl.username", "app"),
                pair("security.protocol", "sasl_ssl"),
                pair("ssl.ca.location", "/ca.pem"),
                pair("ssl.certificate.location", "/c.pem"),
                pair("ssl.endpoint.identification.algorithm", "https"),
                pair("ssl.key.location", "/c.key"),
                pair("ssl.key.password", "keypass"),
            ]
        );
        let unverified = Security {
            tls: Some(KafkaTls::new().verify_host_name(false)),
            sasl: None,
        };
        assert_eq!(
            properties(&unverified),
            vec![
                pair("security.protocol", "ssl"),
                pair("ssl.endpoint.identification.algorithm", "none"),
            ]
        );
        let names: Vec<_> = [
            SaslMechanism::Plain,
            SaslMechanism::ScramSha256,
            SaslMechanism::ScramSha512,
        ]
        .map(SaslMechanism::name)
        .into();
        assert_eq!(names, ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]);
    }

    #[test]
    fn a_build_without_the_feature_is_refused_naming_it() {
        let plain_only = "gzip,snappy,sasl,regex,lz4,sasl_plain,plugins";
        let scram = Security {
            tls: None,
            sasl: Some(login(SaslMechanism::ScramSha256)),
        };
        let err = scram.check(plain_only).unwrap_err();
        assert_eq!(err.field(), "sasl");
        assert!(err.to_string().contains("SCRAM-SHA-256"), "{err}");
        assert!(err.to_string().contains("feature `tls`"), "{err}");
        let tls = Security {
            tls: Some(KafkaTls::new()),
            sasl: None,
        };
        assert_eq!(tls.check(plain_only).unwrap_err().field(), "tls");
        let plain = Security {
            tls: None,
            sasl: Some(login(SaslMechanism::Plain)),
        };
        plain.check(plain_only).expect("PLAIN is built in");
    }

    #[test]
    fn missing_files_and_empty_user_names_are_refused() {
        let all = "ssl,sasl_plain,sasl_scram";
        let missing = Security {
            tls: Some(KafkaTls::new().ca_file("/nonexistent/waybill-ca.pem")),
            sasl: None,
        };
        let err = missing.check(all).unwrap_err();
        assert_eq!(err.field(), "tls.ca_file");
        assert!(
            err.to_string().contains("/nonexistent/waybill-ca.pem"),
            "{err}"
        );
        let nobody = Security {
            tls: None,
            sasl: Some(SaslLogin {
                username: " ".into(),
                ..login(SaslMechanism::Plain)
            }),
        };
        assert_eq!(nobody.check(all).unwrap_err().field(), "sasl");
    }

    #[test]
    fn debug_output_masks_every_secret() {
        let security = Security {
            tls: Some(KafkaTls::new().key_password("keypass-never-shown")),
            sasl: Some(login(SaslMechanism::Plain)),
        };
        let debug = format!("{security:?}");
        assert!(!debug.contains("never-shown"), "{debug}");
        assert!(debug.contains("app"), "{debug}");
    }

    #[test]
    fn secret_properties_are_recognised() {
        for key in [
            "sasl.password",
            "ssl.key.password",
            "ssl.key.pem",
            "ssl.keystore.password",
            "sasl.oauthbearer.client.secret",
            "ssl_key",
        ] {
            assert!(is_secret_property(key), "{key}");
        }
        for key in [
            "ssl.key.location",
            "sasl.username",
            "client.id",
            "linger.ms",
        ] {
            assert!(!is_secret_property(key), "{key}");
        }
    }
}
