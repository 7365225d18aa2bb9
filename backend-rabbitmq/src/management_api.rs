//! A small client of RabbitMQ's management HTTP API (the `rabbitmq_management` plugin), for
//! what the AMQP protocol cannot tell: queue types, replicas, policies, cluster members.

use std::path::{Path, PathBuf};
use std::time::Duration;

use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};
use reqwest::{StatusCode, Url};
use serde_json::Value;
use waybill_core::secret::mask_url_password;
use waybill_core::{BrokerError, ConfigError, FailureClass};

/// The management API's usual port.
const MANAGEMENT_PORT: u16 = 15672;

/// Where the management API of a RabbitMQ node answers, with the credentials and virtual host
/// to read.
#[derive(Clone)]
pub struct ManagementApi {
    base: Url,
    user: String,
    password: String,
    vhost: String,
    client: reqwest::Client,
}

impl std::fmt::Debug for ManagementApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagementApi")
            .field("base", &self.base.as_str())
            .field("user", &self.user)
            .field("vhost", &self.vhost)
            .finish_non_exhaustive()
    }
}

impl ManagementApi {
    /// The management API beside the broker of `amqp_url`: the same host on port 15672 over
    /// `http://`, with the URL's credentials (`guest`/`guest` when it has none) and virtual
    /// host (`/` when it names none).
    ///
    /// # Errors
    /// [`ConfigError`] for a URL that is not `amqp://` or `amqps://` (or does not parse).
    pub fn beside(amqp_url: &str) -> Result<Self, ConfigError> {
        let amqp = parse("broker_url", amqp_url)?;
        if !matches!(amqp.scheme(), "amqp" | "amqps") {
            return Err(ConfigError::new(
                "broker_url",
                format!(
                    "{} is not an amqp:// or amqps:// URL",
                    mask_url_password(amqp_url)
                ),
            ));
        }
        let host = amqp.host_str().unwrap_or("localhost");
        let base = parse(
            "management_url",
            &format!("http://{host}:{MANAGEMENT_PORT}/"),
        )?;
        Self::with_base(base, &amqp, None)
    }

    /// The management API at `management_url` (`http://host:port`, or `https://host:port`
    /// with the `tls` feature; credentials in it optional), reading the virtual host of
    /// `amqp_url` with the management URL's credentials, or else the AMQP URL's.
    ///
    /// An `https://` API is verified against the webpki roots and, when the URL has
    /// `?ca_file=/path/ca.pem`, the certificates of that PEM bundle (a broker whose
    /// certificate a private CA signed). The certificate must name the URL's host.
    ///
    /// # Errors
    /// [`ConfigError`] on field `management_url` for a URL that does not parse, a scheme other
    /// than `http` or `https`, `https` in a build without the `tls` feature, a query parameter
    /// other than `ca_file` (or `ca_file` on `http://`), or a CA file that cannot be read or
    /// holds no certificate.
    pub fn at(management_url: &str, amqp_url: &str) -> Result<Self, ConfigError> {
        let amqp = parse("broker_url", amqp_url)?;
        let mut base = parse("management_url", management_url)?;
        let refused = |reason: &str| {
            ConfigError::new(
                "management_url",
                format!("{}: {reason}", mask_url_password(management_url)),
            )
        };
        match base.scheme() {
            "http" => {}
            "https" if cfg!(feature = "tls") => {}
            "https" => {
                return Err(refused(
                    "https:// needs the tls feature of waybill-rabbitmq, which this build lacks",
                ))
            }
            _ => return Err(refused("is not an http:// or https:// URL")),
        }
        let mut ca_file = None;
        for (key, value) in base.query_pairs() {
            match key.as_ref() {
                "ca_file" if base.scheme() == "https" => ca_file = Some(PathBuf::from(&*value)),
                "ca_file" => return Err(refused("ca_file applies to https:// only")),
                other => {
                    return Err(refused(&format!(
                        "unknown parameter {other:?} (the only one is ca_file)"
                    )))
                }
            }
        }
        base.set_query(None);
        let own_credentials = (!base.username().is_empty()).then(|| {
            (
                decode(base.username()),
                decode(base.password().unwrap_or_default()),
            )
        });
        let _ = base.set_username("");
        let _ = base.set_password(None);
        let mut api = Self::with_base(base, &amqp, ca_file.as_deref())?;
        if let Some((user, password)) = own_credentials {
            (api.user, api.password) = (user, password);
        }
        Ok(api)
    }

    fn with_base(base: Url, amqp: &Url, ca_file: Option<&Path>) -> Result<Self, ConfigError> {
        let (user, password) = if amqp.username().is_empty() {
            ("guest".to_owned(), "guest".to_owned())
        } else {
            (
                decode(amqp.username()),
                decode(amqp.password().unwrap_or_default()),
            )
        };
        let vhost = match amqp.path().trim_start_matches('/') {
            "" => "/".to_owned(),
            path => decode(path),
        };
        let client = http_client(ca_file)?;
        Ok(Self {
            base,
            user,
            password,
            vhost,
            client,
        })
    }

    /// The virtual host read.
    pub fn vhost(&self) -> &str {
        &self.vhost
    }

    /// `GET /api/<path>` where `path` is made of `segments`, each percent-encoded (so a
    /// virtual host `/` or a queue name with dots travel intact). `None` for 404.
    pub(crate) async fn get(&self, segments: &[&str]) -> Result<Option<Value>, BrokerError> {
        let path: Vec<String> = segments
            .iter()
            .map(|s| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string())
            .collect();
        let url = format!("{}api/{}", self.base, path.join("/"));
        let response = self
            .client
            .get(&url)
            .basic_auth(&self.user, Some(&self.password))
            .send()
            .await
            .map_err(|e| {
                let advice = if self.base.scheme() == "https" {
                    "check that it serves HTTPS there, and trust the CA that signed its \
                     certificate with ?ca_file=/path/ca.pem in the management URL (the \
                     certificate must name the URL's host)"
                } else {
                    "enable the rabbitmq_management plugin (rabbitmq-plugins enable \
                     rabbitmq_management) or name its address with --management-url"
                };
                // A certificate refused stays refused until the configuration changes.
                let class = if refused_certificate(&e) {
                    FailureClass::Permanent
                } else {
                    FailureClass::Transient
                };
                BrokerError::new(
                    class,
                    "preflight",
                    format!(
                        "the RabbitMQ management API at {} does not answer ({}): {advice}",
                        self.base,
                        with_causes(&e)
                    ),
                )
            })?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(BrokerError::permanent(
                "preflight",
                format!(
                    "the RabbitMQ management API refused user {:?} ({}): it needs a user with \
                     the monitoring (or management) tag",
                    self.user,
                    response.status()
                ),
            )),
            status if !status.is_success() => Err(BrokerError::transient(
                "preflight",
                format!("the RabbitMQ management API answered {status} for {url}"),
            )),
            _ => response.json().await.map(Some).map_err(|e| {
                BrokerError::transient(
                    "preflight",
                    format!("the RabbitMQ management API sent an unreadable answer: {e}"),
                )
            }),
        }
    }
}

/// Whether `error` is the TLS handshake refusing the server's certificate (an unknown CA, a
/// name it does not list, expired): rustls's error, which reaches reqwest's error chain inside
/// `io::Error`s (whose `source()` skips what they wrap).
#[cfg(feature = "tls")]
fn refused_certificate(error: &reqwest::Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = next {
        if matches!(
            current.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::InvalidCertificate(_))
        ) {
            return true;
        }
        // An `io::Error` wrapping another error (here one `io::Error` in another around
        // rustls's) leads to it through `get_ref`, not `source`.
        next = match current
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => current.source(),
        };
    }
    false
}

/// Without TLS no certificate is ever checked.
#[cfg(not(feature = "tls"))]
fn refused_certificate(_error: &reqwest::Error) -> bool {
    false
}

/// The client every request goes through: a 10 s timeout and, with the `tls` feature, a
/// ready rustls configuration (see `management_tls`), for `http://` too.
fn http_client(ca_file: Option<&Path>) -> Result<reqwest::Client, ConfigError> {
    let builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
    #[cfg(feature = "tls")]
    let builder = builder.tls_backend_preconfigured(crate::management_tls::client_config(ca_file)?);
    #[cfg(not(feature = "tls"))]
    debug_assert!(ca_file.is_none(), "at() refuses ca_file without tls");
    builder
        .build()
        .map_err(|e| ConfigError::new("management_url", with_causes(&e)))
}

/// `error` followed by each of its causes (reqwest's own message names only the step that
/// failed, e.g. "error sending request"; the cause says why: refused, certificate unknown).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn parse(field: &'static str, url: &str) -> Result<Url, ConfigError> {
    Url::parse(url).map_err(|e| {
        ConfigError::new(
            field,
            format!("{} does not parse: {e}", mask_url_password(url)),
        )
    })
}

fn decode(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_beside_a_broker_takes_its_host_credentials_and_vhost() {
        let api = ManagementApi::beside("amqp://app:s%40cret@mq.internal:5672/%2fshop").unwrap();
        assert_eq!(api.base.as_str(), "http://mq.internal:15672/");
        assert_eq!(
            (api.user.as_str(), api.password.as_str()),
            ("app", "s@cret")
        );
        assert_eq!(api.vhost(), "/shop");
        let plain = ManagementApi::beside("amqp://mq").unwrap();
        assert_eq!((plain.user.as_str(), plain.vhost()), ("guest", "/"));
        let debug = format!("{plain:?}");
        assert!(!debug.contains("password"), "{debug}");
    }

    #[test]
    fn a_named_api_keeps_its_own_credentials_and_refuses_other_schemes() {
        let api = ManagementApi::at("http://ops:pw@mgmt:8080", "amqp://app:x@mq/%2f").unwrap();
        assert_eq!(api.base.as_str(), "http://mgmt:8080/");
        assert_eq!((api.user.as_str(), api.password.as_str()), ("ops", "pw"));
        assert_eq!(api.vhost(), "/");
        let ftp = ManagementApi::at("ftp://mgmt", "amqp://mq").unwrap_err();
        assert_eq!(ftp.field(), "management_url");
        let unknown = ManagementApi::at("http://mgmt?verify=no", "amqp://mq").unwrap_err();
        assert!(unknown.to_string().contains("\"verify\""), "{unknown}");
        let plain_ca = ManagementApi::at("http://mgmt?ca_file=/ca.pem", "amqp://mq").unwrap_err();
        assert!(plain_ca.to_string().contains("https:// only"), "{plain_ca}");
        let kafka = ManagementApi::beside("kafka://k:9092").unwrap_err();
        assert!(kafka.to_string().contains("amqp://"), "{kafka}");
    }

    #[test]
    fn an_https_api_needs_the_tls_feature_and_a_readable_ca_file() {
        let https = ManagementApi::at("https://ops:pw@mgmt:15671", "amqp://mq");
        if cfg!(feature = "tls") {
            let api = https.unwrap();
            assert_eq!(api.base.as_str(), "https://mgmt:15671/");
            let missing =
                ManagementApi::at("https://mgmt:15671?ca_file=/nonexistent.pem", "amqp://mq")
                    .unwrap_err();
            assert!(
                missing.to_string().contains("/nonexistent.pem"),
                "{missing}"
            );
        } else {
            let refused = https.unwrap_err();
            assert!(refused.to_string().contains("tls feature"), "{refused}");
            assert!(!refused.to_string().contains("pw"), "{refused}");
        }
    }
}
