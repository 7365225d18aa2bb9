//! RabbitMQ over `amqps://` against the broker's real TLS listener: a confirmed publish and
//! its delivery with the test CA trusted; mutual TLS with a client certificate that CA signed;
//! and, each failing at once for good with an error that says why and never shows a password:
//! a broker certificate no trusted CA signed, a host name the certificate does not list, a
//! client certificate from another CA, a wrong password. A server-name override verifies the
//! certificate for that name while connecting to the URL's host. The management API over
//! HTTPS: verified with the CA named in its URL, refused without it or for a host its
//! certificate does not list.

mod support;

use std::time::Duration;

use support::rabbitmq_tls::{
    management_address, require_listener, require_management_listener, tls_dir, url, url_for,
};
use support::test_certificates::TestCa;
use support::tls_terminator::TlsTerminator;
use waybill_core::{BrokerError, FailureClass, Message, Publisher, Subscriber};
use waybill_rabbitmq::{
    delete_group_topology, rabbitmq_preflight, ManagementApi, RabbitConfig, RabbitPublisher,
    RabbitSubscriber,
};

fn unique(prefix: &str) -> String {
    let id = waybill_core::MessageId::new().to_string().replace('-', "");
    format!("wb-{prefix}-{}", &id[22..])
}

fn trusting_the_test_ca(url: &str) -> RabbitConfig {
    RabbitConfig::builder(url)
        .tls_ca_file(tls_dir().join("ca.pem"))
        .connect_timeout(Duration::from_secs(10))
        .retry_tiers([Duration::from_secs(1)])
        .build()
        .expect("valid TLS config")
}

async fn refused(config: RabbitConfig) -> BrokerError {
    match RabbitPublisher::connect(config).await {
        Ok(_) => panic!("the connection should have been refused"),
        Err(e) => e,
    }
}

fn assert_permanent_saying(error: &BrokerError, says: &str) {
    assert_eq!(error.class(), FailureClass::Permanent, "{error}");
    assert!(error.to_string().contains(says), "{error}");
}

/// Publishes one message with a confirm through `config` and receives it back.
async fn round_trip(config: RabbitConfig) {
    let topic = unique("tls");
    let mut subscriber = RabbitSubscriber::connect(config.clone(), &topic, "g")
        .await
        .unwrap_or_else(|e| panic!("subscribe over TLS: {e}"));
    let publisher = RabbitPublisher::connect(config.clone())
        .await
        .unwrap_or_else(|e| panic!("connect over TLS: {e}"));
    let message = Message::new("over tls").with_key("k-1");
    publisher
        .publish(&topic, message.clone())
        .await
        .unwrap_or_else(|e| panic!("confirmed publish over TLS: {e}"));
    let delivery = tokio::time::timeout(Duration::from_secs(30), subscriber.receive())
        .await
        .expect("a delivery within 30 s")
        .unwrap()
        .expect("the subscriber is open");
    assert_eq!(delivery.message().message().id(), message.id());
    assert_eq!(&delivery.message().message().payload()[..], b"over tls");
    delivery.ack().await.unwrap();
    subscriber.close().await.unwrap();
    publisher.close().await.unwrap();
    delete_group_topology(&config, &topic, "g", true)
        .await
        .unwrap();
}

#[tokio::test]
async fn amqps_with_the_test_ca_confirms_a_publish_and_delivers_it() {
    require_listener();
    round_trip(trusting_the_test_ca(&url())).await;
}

#[tokio::test]
async fn mutual_tls_with_a_client_certificate_from_the_ca_works() {
    require_listener();
    let dir = tls_dir();
    let config = RabbitConfig::builder(url())
        .tls_ca_file(dir.join("ca.pem"))
        .tls_client_identity(dir.join("client.pem"), dir.join("client.key"))
        .retry_tiers([Duration::from_secs(1)])
        .build()
        .unwrap();
    round_trip(config).await;
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused_by_the_broker() {
    require_listener();
    let dir = std::env::temp_dir().join(unique("rabbit-client"));
    std::fs::create_dir_all(&dir).unwrap();
    let stranger = TestCa::new("a CA the broker does not trust").client("stranger");
    std::fs::write(dir.join("client.pem"), &stranger.cert_pem).unwrap();
    std::fs::write(dir.join("client.key"), &stranger.key_pem).unwrap();
    let config = RabbitConfig::builder(url())
        .tls_ca_file(tls_dir().join("ca.pem"))
        .tls_client_identity(dir.join("client.pem"), dir.join("client.key"))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    // The broker checks a client certificate after the client finished its side of the TLS
    // 1.3 handshake: its alert comes with the first read, or is lost when the broker closes
    // the socket first (a reset, which the client cannot tell from a network fault).
    let error = refused(config).await;
    let text = error.to_string();
    if text.contains("Connection reset") {
        assert_eq!(error.class(), FailureClass::Transient, "{error}");
    } else {
        assert_permanent_saying(&error, "refused the TLS handshake");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_broker_certificate_no_trusted_ca_signed_is_refused_for_good() {
    require_listener();
    let dir = std::env::temp_dir().join(unique("rabbit-ca"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.pem"), TestCa::new("some other CA").cert_pem).unwrap();
    let config = RabbitConfig::builder(url())
        .tls_ca_file(dir.join("ca.pem"))
        .build()
        .unwrap();
    let error = refused(config).await;
    assert_permanent_saying(&error, "certificate verification failed");
    assert!(error.to_string().contains("trusted CA"), "{error}");
    // Without a CA file only the webpki roots are trusted: refused the same way.
    let error = refused(RabbitConfig::builder(url()).build().unwrap()).await;
    assert_permanent_saying(&error, "certificate verification failed");
    let _ = std::fs::remove_dir_all(dir);
}

/// The broker's own listener has a valid certificate, so an expired one is served by a TLS
/// terminator made at test time in front of the broker's plain port.
#[tokio::test]
async fn an_expired_broker_certificate_is_refused_for_good() {
    let ca = TestCa::new("waybill expiry test CA");
    let plain = support::rabbitmq::url();
    let upstream = plain
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|host_port| std::net::ToSocketAddrs::to_socket_addrs(host_port).ok())
        .and_then(|mut addrs| addrs.next())
        .unwrap_or_else(|| "127.0.0.1:5672".parse().unwrap());
    let terminator = TlsTerminator::start(&ca.expired_server(&["localhost"]), upstream).await;
    let dir = std::env::temp_dir().join(unique("rabbit-expired"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.pem"), &ca.cert_pem).unwrap();
    let url = format!(
        "amqps://guest:guest@localhost:{}/%2f",
        terminator.addr.port()
    );
    let config = RabbitConfig::builder(url)
        .tls_ca_file(dir.join("ca.pem"))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let error = refused(config).await;
    assert_permanent_saying(&error, "has expired");
    assert_eq!(
        terminator.handshakes(),
        0,
        "the client refused the handshake"
    );
    // The same terminator with a current certificate lets the client through: the refusal
    // above was the expiry, not the terminator.
    let current = TlsTerminator::start(&ca.server(&["localhost"]), upstream).await;
    let url = format!("amqps://guest:guest@localhost:{}/%2f", current.addr.port());
    let config = RabbitConfig::builder(url)
        .tls_ca_file(dir.join("ca.pem"))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    RabbitPublisher::connect(config)
        .await
        .unwrap_or_else(|e| panic!("a current certificate from the same CA: {e}"));
    assert!(current.handshakes() >= 1);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_host_name_the_broker_certificate_does_not_list_is_refused() {
    require_listener();
    // The script's certificate names only `localhost`.
    let error = refused(trusting_the_test_ca(&url_for("127.0.0.1", "guest"))).await;
    assert_permanent_saying(&error, "not valid for the host name");
}

#[tokio::test]
async fn a_wrong_password_over_tls_is_refused_without_showing_it() {
    require_listener();
    let attempted = "Not-The-Guest-Password-8x";
    let error = refused(trusting_the_test_ca(&url_for("localhost", attempted))).await;
    assert_eq!(error.class(), FailureClass::Permanent, "{error}");
    assert!(
        error.to_string().to_lowercase().contains("refused")
            || error.to_string().contains("ACCESS"),
        "{error}"
    );
    assert!(!error.to_string().contains(attempted), "{error}");
    assert!(!format!("{error:?}").contains(attempted), "{error:?}");
}

#[tokio::test]
async fn a_server_name_override_verifies_the_certificate_for_that_name() {
    require_listener();
    // By IP address, which the certificate does not list, verified for `localhost`, which it
    // does: the round trip works.
    let by_address = |name: &str| {
        RabbitConfig::builder(url_for("127.0.0.1", "guest"))
            .tls_ca_file(tls_dir().join("ca.pem"))
            .tls_server_name(name)
            .retry_tiers([Duration::from_secs(1)])
            .build()
            .unwrap()
    };
    round_trip(by_address("localhost")).await;
    // Verified for a name the certificate does not list: refused for good.
    let error = refused(by_address("broker.example")).await;
    assert_permanent_saying(&error, "not valid for the host name");
    assert!(error.to_string().contains("broker.example"), "{error}");
}

/// The management API of the broker's HTTPS listener at `host:port`, trusting the test CA
/// when `trust_ca`.
fn https_management(address: &str, trust_ca: bool) -> ManagementApi {
    let ca = tls_dir().join("ca.pem");
    let query = if trust_ca {
        format!("?ca_file={}", ca.display())
    } else {
        String::new()
    };
    ManagementApi::at(&format!("https://{address}/{query}"), &url()).expect("valid URL")
}

#[tokio::test]
async fn the_management_api_over_https_is_verified_with_the_ca_in_its_url() {
    require_listener();
    require_management_listener();
    let topic = unique("mgmt-tls");
    let subscriber = RabbitSubscriber::connect(trusting_the_test_ca(&url()), &topic, "g")
        .await
        .unwrap_or_else(|e| panic!("subscribe over TLS: {e}"));

    let trusted = https_management(&management_address(), true);
    let reports = rabbitmq_preflight(&trusted, &topic)
        .await
        .unwrap_or_else(|e| panic!("preflight over HTTPS with the test CA: {e}"));
    let queue = reports
        .iter()
        .find(|r| r.target == format!("rabbitmq queue {topic}.g"))
        .unwrap_or_else(|| panic!("the group's queue is reported: {reports:?}"));
    let durable = queue.checks.iter().find(|c| c.name == "durable").unwrap();
    assert_eq!(durable.verdict.as_str(), "PASS", "{queue:?}");

    // The webpki roots alone do not know the test CA: refused, saying how to trust it.
    let untrusted = rabbitmq_preflight(&https_management(&management_address(), false), &topic)
        .await
        .expect_err("a certificate no trusted CA signed");
    let text = untrusted.to_string();
    assert!(
        text.contains("certificate"),
        "names the certificate: {text}"
    );
    assert!(text.contains("ca_file"), "says how to trust it: {text}");
    assert!(!text.contains("guest:guest"), "{text}");
    assert!(
        !untrusted.is_transient(),
        "a refused certificate stays refused until the configuration changes: {untrusted:?}"
    );

    // The certificate names localhost only: by IP address it is refused, CA trusted or not.
    let port = management_address()
        .rsplit_once(':')
        .map(|(_, port)| port.to_owned())
        .unwrap();
    let by_ip = rabbitmq_preflight(
        &https_management(&format!("127.0.0.1:{port}"), true),
        &topic,
    )
    .await
    .expect_err("a host the certificate does not list");
    assert!(
        by_ip.to_string().contains("certificate"),
        "names the certificate: {by_ip}"
    );
    assert!(!by_ip.is_transient(), "{by_ip:?}");

    drop(subscriber);
    delete_group_topology(&trusting_the_test_ca(&url()), &topic, "g", true)
        .await
        .unwrap();
}
