//! Connection URLs of brokers whose clients take no URL of their own (Kafka, RocketMQ):
//! `scheme://[user:password@]host:port[,host:port...][?key=value&...]`.
//!
//! Several hosts separated by `,` or `;` are kept as one string, which is why a general URL
//! parser (one host per URL) does not fit. User, password and values are percent-decoded; the
//! password is held as a [`Secret`] and every error shows the URL with it masked.

use std::collections::BTreeMap;

use crate::secret::{mask_url_password, Secret};
use crate::tls_files::TlsFiles;
use crate::ConfigError;

/// A parsed broker URL.
///
/// ```
/// use waybill_core::broker_url::BrokerUrl;
///
/// let url = BrokerUrl::parse("kafkas://app:p%40ss@b1:9093,b2:9093?sasl_mechanism=PLAIN")?;
/// assert_eq!(url.scheme(), "kafkas");
/// assert_eq!(url.hosts(), "b1:9093,b2:9093");
/// assert_eq!(url.user(), Some("app"));
/// assert_eq!(url.password().map(|p| p.expose()), Some("p@ss"));
/// assert_eq!(url.option("sasl_mechanism"), Some("PLAIN"));
/// # Ok::<(), waybill_core::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct BrokerUrl {
    scheme: String,
    user: Option<String>,
    password: Option<Secret>,
    hosts: String,
    options: BTreeMap<String, String>,
    masked: String,
}

impl BrokerUrl {
    /// Parses `url`.
    ///
    /// # Errors
    /// [`ConfigError`] (field `url`) when there is no `scheme://`, no host, a part that is not
    /// valid percent-encoded UTF-8, or an option given twice; the URL it names is masked.
    pub fn parse(url: &str) -> Result<Self, ConfigError> {
        let masked = mask_url_password(url);
        let refuse = |why: &str| ConfigError::new("url", format!("{why} in {masked}"));
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| refuse("no scheme:// found"))?;
        let (authority, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let authority = authority.trim_end_matches('/');
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        if hosts.split([',', ';']).all(|h| h.trim().is_empty()) {
            return Err(refuse("no host:port"));
        }
        let decode = |part: &str, what: &str| {
            percent_encoding::percent_decode_str(part)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| refuse(&format!("the {what} is not valid percent-encoded UTF-8")))
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(info) => match info.split_once(':') {
                Some((u, p)) => (
                    Some(decode(u, "user name")?),
                    Some(Secret::new(decode(p, "password")?)),
                ),
                None => (Some(decode(info, "user name")?), None),
            },
        };
        let mut options = BTreeMap::new();
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode(key, "option name")?;
            if options
                .insert(key.clone(), decode(value, "option value")?)
                .is_some()
            {
                return Err(refuse(&format!("option {key} is given twice")));
            }
        }
        Ok(Self {
            scheme: scheme.to_ascii_lowercase(),
            user,
            password,
            hosts: hosts.to_owned(),
            options,
            masked,
        })
    }

    /// The scheme, lower case.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The hosts as written (`host:port,host:port`).
    pub fn hosts(&self) -> &str {
        &self.hosts
    }

    /// The decoded user name.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The decoded password.
    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    /// The value of option `key`.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options.get(key).map(String::as_str)
    }

    /// The value of the yes/no option `key` (`true`/`false`, `1`/`0`, `yes`/`no`).
    ///
    /// # Errors
    /// [`ConfigError`] naming the option for any other value.
    pub fn flag(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.option(key) {
            None => Ok(None),
            Some("true" | "1" | "yes") => Ok(Some(true)),
            Some("false" | "0" | "no") => Ok(Some(false)),
            Some(other) => Err(ConfigError::new(
                "url",
                format!(
                    "option {key}={other} is not true or false in {}",
                    self.masked
                ),
            )),
        }
    }

    /// Refuses options other than `known`, naming the first one and the accepted ones.
    ///
    /// # Errors
    /// [`ConfigError`] for an unknown option.
    pub fn only_options(&self, known: &[&str]) -> Result<(), ConfigError> {
        match self.options.keys().find(|k| !known.contains(&k.as_str())) {
            None => Ok(()),
            Some(unknown) => Err(ConfigError::new(
                "url",
                format!(
                    "unknown option {unknown} in {} (accepted: {})",
                    self.masked,
                    known.join(", ")
                ),
            )),
        }
    }

    /// The TLS settings of a URL whose scheme is `plain` (TLS when `tls=true`) or `secure`
    /// (always TLS): `None` without TLS, else the files of the options `ca_file`, `cert_file`
    /// and `key_file`, and the yes/no option `verify` when given.
    ///
    /// # Errors
    /// [`ConfigError`] for another scheme, `secure` with `tls=false`, a certificate without
    /// its key (or the reverse), or file or `verify` options without TLS.
    pub fn tls(
        &self,
        plain: &str,
        secure: &str,
        verify: &str,
    ) -> Result<Option<(TlsFiles, Option<bool>)>, ConfigError> {
        let refuse = |why: String| ConfigError::new("url", format!("{why} in {}", self.masked));
        let on = match self.scheme() {
            s if s == plain => self.flag("tls")?.unwrap_or(false),
            s if s == secure => {
                if self.flag("tls")? == Some(false) {
                    return Err(refuse(format!("{secure}:// with tls=false")));
                }
                true
            }
            other => {
                return Err(refuse(format!(
                    "scheme {other}:// is not {plain}:// or {secure}://"
                )))
            }
        };
        let (ca, cert, key) = (
            self.option("ca_file"),
            self.option("cert_file"),
            self.option("key_file"),
        );
        if !on {
            if ca.is_some() || cert.is_some() || key.is_some() || self.option(verify).is_some() {
                return Err(refuse(format!(
                    "TLS options without TLS (use {secure}:// or tls=true)"
                )));
            }
            return Ok(None);
        }
        let client_certificate = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert.into(), key.into())),
            (None, None) => None,
            _ => return Err(refuse("cert_file and key_file go together".into())),
        };
        let files = TlsFiles {
            ca_file: ca.map(Into::into),
            client_certificate,
            key_password: None,
        };
        Ok(Some((files, self.flag(verify)?)))
    }

    /// The URL as written, with the password masked (for messages).
    pub fn masked(&self) -> &str {
        &self.masked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_split_and_decoded() {
        let url = BrokerUrl::parse("rocketmq://ak:s%2Fk@ns1:9876;ns2:9876/?tls=yes").unwrap();
        assert_eq!(url.scheme(), "rocketmq");
        assert_eq!(url.hosts(), "ns1:9876;ns2:9876");
        assert_eq!(url.user(), Some("ak"));
        assert_eq!(url.password().unwrap().expose(), "s/k");
        assert_eq!(url.flag("tls").unwrap(), Some(true));
        assert_eq!(url.flag("other").unwrap(), None);
        assert_eq!(url.masked(), "rocketmq://ak:***@ns1:9876;ns2:9876/?tls=yes");
        let bare = BrokerUrl::parse("kafka://b:9092").unwrap();
        assert_eq!((bare.user(), bare.password()), (None, None));
        assert_eq!(bare.hosts(), "b:9092");
    }

    #[test]
    fn bad_urls_are_refused_without_showing_the_password() {
        for bad in [
            "b:9092",
            "kafka://u:topsecret@",
            "kafka://u:topsecret@b:9092?a=1&a=2",
            "kafka://u:top%FFsecret@b:9092",
        ] {
            let err = BrokerUrl::parse(bad).unwrap_err();
            assert_eq!(err.field(), "url");
            assert!(!err.to_string().contains("topsecret"), "{err}");
        }
        let url = BrokerUrl::parse("kafka://u:topsecret@b:9092?tls=maybe&x=1").unwrap();
        assert!(url.flag("tls").is_err());
        let err = url.only_options(&["tls"]).unwrap_err();
        assert!(err.to_string().contains("unknown option x"), "{err}");
        assert!(!err.to_string().contains("topsecret"), "{err}");
    }
}
