//! [`KafkaConfig::from_url`]: the connection settings as one URL, for command lines,
//! environment variables and secret files.

use waybill_core::broker_url::BrokerUrl;
use waybill_core::ConfigError;

use crate::config::{KafkaConfig, KafkaConfigBuilder};
use crate::security::{KafkaTls, SaslMechanism};

const OPTIONS: [&str; 7] = [
    "tls",
    "sasl_mechanism",
    "ca_file",
    "cert_file",
    "key_file",
    "verify_host_name",
    "client_id",
];

impl KafkaConfig {
    /// A builder from `kafka://[user:password@]host:port[,host:port...][?options]`;
    /// `kafkas://` connects over TLS. User and password (percent-encoded) log in with SASL,
    /// whose mechanism must be named. Options: `sasl_mechanism` (`PLAIN`, `SCRAM-SHA-256`,
    /// `SCRAM-SHA-512`), `tls` (`true` is the same as `kafkas://`), `ca_file`, `cert_file`
    /// and `key_file` (PEM files; TLS only), `verify_host_name` (default `true`), `client_id`.
    ///
    /// ```
    /// use waybill_kafka::KafkaConfig;
    ///
    /// let config = KafkaConfig::from_url(
    ///     "kafkas://orders:s3cret@b1:9093,b2:9093?sasl_mechanism=SCRAM-SHA-512",
    /// )?
    /// .build()?;
    /// assert_eq!(config.brokers(), "b1:9093,b2:9093");
    /// assert_eq!(config.security_protocol(), "sasl_ssl");
    /// assert!(!format!("{config:?}").contains("s3cret"));
    /// # Ok::<(), waybill_core::ConfigError>(())
    /// ```
    ///
    /// # Errors
    /// [`ConfigError`] (field `url`) for another scheme, an unknown option, a user without a
    /// mechanism (or the reverse), or TLS files without TLS; the URL is shown masked.
    pub fn from_url(url: &str) -> Result<KafkaConfigBuilder, ConfigError> {
        let url = BrokerUrl::parse(url)?;
        url.only_options(&OPTIONS)?;
        let refuse = |why: String| ConfigError::new("url", format!("{why} in {}", url.masked()));
        let tls = url.tls("kafka", "kafkas", "verify_host_name")?;
        let mut builder = KafkaConfig::builder(url.hosts());
        if let Some(id) = url.option("client_id") {
            builder = builder.client_id(id);
        }
        if let Some((files, verify)) = tls {
            let tls = KafkaTls::from_files(files);
            builder = builder.tls(match verify {
                Some(verify) => tls.verify_host_name(verify),
                None => tls,
            });
        }
        match (url.user(), url.option("sasl_mechanism")) {
            (None, None) => {}
            (Some(user), Some(name)) => {
                let mechanism = match name.to_ascii_uppercase().as_str() {
                    "PLAIN" => SaslMechanism::Plain,
                    "SCRAM-SHA-256" => SaslMechanism::ScramSha256,
                    "SCRAM-SHA-512" => SaslMechanism::ScramSha512,
                    _ => {
                        return Err(refuse(format!(
                            "sasl_mechanism {name} is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
                        )))
                    }
                };
                let password = url.password().cloned().unwrap_or_else(|| "".into());
                builder = builder.sasl(mechanism, user, password);
            }
            (Some(_), None) => {
                return Err(refuse(
                    "a user without sasl_mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)".into(),
                ))
            }
            (None, Some(_)) => return Err(refuse("sasl_mechanism without user:password@".into())),
        }
        Ok(builder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_map_onto_the_typed_settings() {
        let plain = KafkaConfig::from_url("kafka://b:9092")
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(plain.security_protocol(), "plaintext");
        assert_eq!(plain.brokers(), "b:9092");
        let ssl = KafkaConfig::from_url("kafka://b:9093?tls=true&verify_host_name=false")
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(ssl.security_protocol(), "ssl");
        assert!(format!("{ssl:?}").contains("verify_host_name: false"));
        let sasl = KafkaConfig::from_url("kafka://u:p%26w@b:9092?sasl_mechanism=plain")
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(sasl.security_protocol(), "sasl_plaintext");
        let debug = format!("{sasl:?}");
        assert!(!debug.contains("p&w") && debug.contains("Plain"), "{debug}");
    }

    #[test]
    fn contradictory_urls_are_refused_with_the_password_masked() {
        for bad in [
            "amqp://u:hidden-pw@b:9092",
            "kafka://u:hidden-pw@b:9092",
            "kafka://b:9092?sasl_mechanism=PLAIN",
            "kafka://u:hidden-pw@b:9092?sasl_mechanism=GSSAPI",
            "kafka://u:hidden-pw@b:9092?ca_file=/ca.pem",
            "kafkas://u:hidden-pw@b:9092?tls=false",
            "kafkas://u:hidden-pw@b:9092?cert_file=/c.pem",
            "kafkas://u:hidden-pw@b:9092?acks=1",
        ] {
            let err = KafkaConfig::from_url(bad).unwrap_err();
            assert_eq!(err.field(), "url", "{bad}");
            assert!(!err.to_string().contains("hidden-pw"), "{err}");
        }
    }
}
