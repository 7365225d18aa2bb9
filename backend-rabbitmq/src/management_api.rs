//! A small client of RabbitMQ's management HTTP API (the `rabbitmq_management` plugin), for
//! what the AMQP protocol cannot tell: queue types, replicas, policies, cluster members.

use std::time::Duration;

use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};
use reqwest::{StatusCode, Url};
use serde_json::Value;
use waybill_core::secret::mask_url_password;
use waybill_core::{BrokerError, ConfigError};

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
        Self::with_base(base, &amqp)
    }

    /// The management API at `management_url` (`http://host:port`, credentials in it
    /// optional), reading the virtual host of `amqp_url` with the management URL's
    /// credentials, or else the AMQP URL's.
    ///
    /// # Errors
    /// [`ConfigError`] for a URL that does not parse, or a management URL that is not
    /// `http://` (`https://` is not supported yet: put the check on a host that reaches the
    /// plain port, or use an SSH tunnel).
    pub fn at(management_url: &str, amqp_url: &str) -> Result<Self, ConfigError> {
        let amqp = parse("broker_url", amqp_url)?;
        let mut base = parse("management_url", management_url)?;
        if base.scheme() != "http" {
            return Err(ConfigError::new(
                "management_url",
                format!(
                    "{} is not an http:// URL (https:// management APIs are not supported yet)",
                    mask_url_password(management_url)
                ),
            ));
        }
        let own_credentials = (!base.username().is_empty()).then(|| {
            (
                decode(base.username()),
                decode(base.password().unwrap_or_default()),
            )
        });
        let _ = base.set_username("");
        let _ = base.set_password(None);
        let mut api = Self::with_base(base, &amqp)?;
        if let Some((user, password)) = own_credentials {
            (api.user, api.password) = (user, password);
        }
        Ok(api)
    }

    fn with_base(base: Url, amqp: &Url) -> Result<Self, ConfigError> {
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
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ConfigError::new("management_url", e.to_string()))?;
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
                BrokerError::transient(
                    "preflight",
                    format!(
                        "the RabbitMQ management API at {} does not answer ({e}): enable the \
                         rabbitmq_management plugin (rabbitmq-plugins enable \
                         rabbitmq_management) or name its address with --management-url",
                        self.base
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
        let https = ManagementApi::at("https://mgmt:15671", "amqp://mq").unwrap_err();
        assert_eq!(https.field(), "management_url");
        let kafka = ManagementApi::beside("kafka://k:9092").unwrap_err();
        assert!(kafka.to_string().contains("amqp://"), "{kafka}");
    }
}
