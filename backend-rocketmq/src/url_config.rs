//! [`RocketConfig::from_url`]: the connection settings as one URL, for command lines,
//! environment variables and secret files.

use waybill_core::broker_url::BrokerUrl;
use waybill_core::ConfigError;

use crate::config::{RocketConfig, RocketConfigBuilder};
use crate::security::RocketTls;

const OPTIONS: [&str; 6] = [
    "tls",
    "ca_file",
    "cert_file",
    "key_file",
    "verify_server",
    "producer_group",
];

impl RocketConfig {
    /// A builder from `rocketmq://[access_key:secret_key@]host:port[;host:port...][?options]`;
    /// `rocketmqs://` connects over TLS. Access key and secret key (percent-encoded) sign the
    /// requests (ACL). Options: `tls` (`true` is the same as `rocketmqs://`), `ca_file`,
    /// `cert_file` and `key_file` (PEM files; TLS only), `verify_server` (default `true`),
    /// `producer_group`.
    ///
    /// ```
    /// use waybill_rocketmq::RocketConfig;
    ///
    /// let config = RocketConfig::from_url("rocketmqs://ak:s3cret@ns1:9876;ns2:9876")?.build()?;
    /// assert_eq!(config.name_server(), "ns1:9876;ns2:9876");
    /// assert!(config.uses_tls());
    /// assert_eq!(config.access_key(), Some("ak"));
    /// assert!(!format!("{config:?}").contains("s3cret"));
    /// # Ok::<(), waybill_core::ConfigError>(())
    /// ```
    ///
    /// # Errors
    /// [`ConfigError`] (field `url`) for another scheme, an unknown option, an access key
    /// without a secret key, or TLS files without TLS; the URL is shown masked.
    pub fn from_url(url: &str) -> Result<RocketConfigBuilder, ConfigError> {
        let url = BrokerUrl::parse(url)?;
        url.only_options(&OPTIONS)?;
        let refuse = |why: String| ConfigError::new("url", format!("{why} in {}", url.masked()));
        let tls = url.tls("rocketmq", "rocketmqs", "verify_server")?;
        let mut builder = RocketConfig::builder(url.hosts());
        if let Some(group) = url.option("producer_group") {
            builder = builder.producer_group(group);
        }
        if let Some((files, verify)) = tls {
            let tls = RocketTls::from_files(files);
            builder = builder.tls(match verify {
                Some(verify) => tls.verify_server(verify),
                None => tls,
            });
        }
        match (url.user(), url.password()) {
            (None, _) => {}
            (Some(access_key), Some(secret_key)) => {
                builder = builder.acl(access_key, secret_key.clone());
            }
            (Some(_), None) => {
                return Err(refuse(
                    "an access key without its secret key (access_key:secret_key@)".into(),
                ))
            }
        }
        Ok(builder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_map_onto_the_typed_settings() {
        let plain = RocketConfig::from_url("rocketmq://ns:9876")
            .unwrap()
            .build()
            .unwrap();
        assert!(!plain.uses_tls());
        assert_eq!(plain.access_key(), None);
        let tls = RocketConfig::from_url("rocketmq://ns:9876?tls=1&verify_server=false")
            .unwrap()
            .build()
            .unwrap();
        assert!(tls.uses_tls());
        assert!(format!("{tls:?}").contains("verify_server: false"));
    }

    #[test]
    fn contradictory_urls_are_refused_with_the_secret_masked() {
        for bad in [
            "kafka://ak:hidden-sk@ns:9876",
            "rocketmq://ak@ns:9876",
            "rocketmq://ak:hidden-sk@ns:9876?ca_file=/ca.pem",
            "rocketmqs://ak:hidden-sk@ns:9876?tls=false",
            "rocketmqs://ak:hidden-sk@ns:9876?key_file=/k.pem",
            "rocketmq://ak:hidden-sk@ns:9876?namespace=x",
        ] {
            let err = RocketConfig::from_url(bad).unwrap_err();
            assert_eq!(err.field(), "url", "{bad}");
            assert!(!err.to_string().contains("hidden-sk"), "{err}");
        }
    }
}
