//! Kafka over TLS through the typed settings, against a real TLS endpoint: a terminator made
//! at test time with rcgen certificates, in front of the local Kafka-protocol broker (which
//! serves neither TLS nor SASL itself). The bootstrap connection's handshake, ApiVersion and
//! Metadata requests run through librdkafka's OpenSSL exactly as against a TLS broker; what
//! the test broker cannot show (produce over TLS, which librdkafka sends to the broker's
//! advertised plaintext address, and a SASL login) is covered by the settings-mapping unit
//! tests.
//!
//! Each refused case fails at connect, at once and for good, with an error that names what
//! failed, and never shows the SASL password.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;

use support::kafka::{brokers, require_broker};
use support::test_certificates::{CertifiedKey, TestCa};
use support::tls_terminator::TlsTerminator;
use waybill_core::{BrokerError, FailureClass};
use waybill_kafka::{KafkaConfig, KafkaPublisher, KafkaSubscriber, KafkaTls, SaslMechanism};

const PASSWORD: &str = "kafka-pa55-never-printed";

/// Writes `pem` to a file of its own and returns its path.
fn pem_file(name: &str, pem: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("waybill-kafka-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, pem).expect("write PEM");
    path
}

fn broker_addr() -> SocketAddr {
    let first = brokers().split(',').next().unwrap_or_default().to_owned();
    std::net::ToSocketAddrs::to_socket_addrs(&first)
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| panic!("WAYBILL_KAFKA_BROKERS names no usable address: {first}"))
}

/// A terminator in front of the local broker presenting `server`.
async fn terminator(server: &CertifiedKey) -> TlsTerminator {
    TlsTerminator::start(server, broker_addr()).await
}

fn config(host: &str, terminator: &TlsTerminator, tls: KafkaTls) -> KafkaConfig {
    KafkaConfig::builder(format!("{host}:{}", terminator.addr.port()))
        .tls(tls)
        .build()
        .expect("valid TLS config")
}

async fn refused(config: KafkaConfig) -> BrokerError {
    match KafkaPublisher::connect(config).await {
        Ok(_) => panic!("the connection should have been refused"),
        Err(e) => e,
    }
}

fn assert_permanent_saying(error: &BrokerError, says: &str) {
    assert_eq!(error.class(), FailureClass::Permanent, "{error}");
    let text = error.to_string();
    assert!(text.contains("TLS handshake"), "{text}");
    assert!(text.contains(says), "{text}");
    assert!(!format!("{text} {error:?}").contains(PASSWORD), "{text}");
}

/// The bootstrap connection completes its handshake, and the broker behind the terminator
/// answers the ApiVersion and Metadata requests sent over it. librdkafka then leaves the
/// bootstrap connection for the broker's advertised address, which is the plain port here, so
/// the connect as a whole ends in a *transient* "no broker answered" (never a TLS error); the
/// log lines prove the TLS conversation.
#[tokio::test]
async fn the_trusted_certificate_reaches_the_broker() {
    require_broker().await;
    let log = support::captured_log::capture();
    let ca = TestCa::new("waybill kafka test CA");
    let tls = terminator(&ca.server(&["localhost", "127.0.0.1"])).await;
    let config = KafkaConfig::builder(format!("localhost:{}", tls.addr.port()))
        .tls(KafkaTls::new().ca_file(pem_file("ca.pem", &ca.cert_pem)))
        .property("debug", "broker,protocol")
        .build()
        .expect("valid TLS config");
    assert_eq!(config.security_protocol(), "ssl");
    if let Err(e) = KafkaPublisher::connect(config).await {
        assert_eq!(e.class(), FailureClass::Transient, "{e}");
        assert!(!e.to_string().contains("TLS handshake"), "{e}");
    }
    assert!(
        tls.handshakes() >= 1,
        "the client spoke TLS to the terminator"
    );
    let bootstrap = format!("ssl://localhost:{}/bootstrap", tls.addr.port());
    let logged = log.text();
    for step in ["Received ApiVersionResponse", "Received MetadataResponse"] {
        assert!(
            logged
                .lines()
                .any(|l| l.contains(&bootstrap) && l.contains(step)),
            "{step} over {bootstrap} is not in the log"
        );
    }
}

#[tokio::test]
async fn a_broker_certificate_no_trusted_ca_signed_is_refused_for_good() {
    let ca = TestCa::new("waybill kafka test CA");
    let stranger = TestCa::new("a CA nobody trusts");
    let tls = terminator(&stranger.server(&["localhost"])).await;
    let config = config(
        "localhost",
        &tls,
        KafkaTls::new().ca_file(pem_file("trusted-ca.pem", &ca.cert_pem)),
    );
    let e = refused(config).await;
    assert_permanent_saying(&e, "certificate verify failed");
    assert_eq!(tls.handshakes(), 0);
}

#[tokio::test]
async fn a_host_name_the_certificate_does_not_list_is_refused() {
    let ca = TestCa::new("waybill kafka test CA");
    let tls = terminator(&ca.server(&["kafka.other.example"])).await;
    let config = config(
        "localhost",
        &tls,
        KafkaTls::new().ca_file(pem_file("host-ca.pem", &ca.cert_pem)),
    );
    let e = refused(config).await;
    assert_permanent_saying(&e, "certificate verify failed");
    assert_eq!(tls.handshakes(), 0);
}

#[tokio::test]
async fn an_expired_broker_certificate_is_refused() {
    let ca = TestCa::new("waybill kafka test CA");
    let tls = terminator(&ca.expired_server(&["localhost"])).await;
    let config = config(
        "localhost",
        &tls,
        KafkaTls::new().ca_file(pem_file("expired-ca.pem", &ca.cert_pem)),
    );
    let e = refused(config).await;
    // librdkafka reports every verification failure alike; the expiry is the only fault of
    // this certificate (the same CA's current certificate passes in the test above).
    assert_permanent_saying(&e, "certificate verify failed");
    assert_eq!(tls.handshakes(), 0);
}

#[tokio::test]
async fn bad_security_settings_are_refused_before_connecting() {
    let missing = KafkaConfig::builder("localhost:9093")
        .tls(KafkaTls::new().ca_file("/nonexistent/waybill/ca.pem"))
        .build()
        .unwrap_err();
    assert_eq!(missing.field(), "tls.ca_file");
    assert!(missing.to_string().contains("/nonexistent/waybill/ca.pem"));
    let owned = KafkaConfig::builder("localhost:9093")
        .property("sasl.password", PASSWORD)
        .build()
        .unwrap_err();
    assert_eq!(owned.field(), "property");
    assert!(owned.to_string().contains("::sasl"), "{owned}");
    assert!(!format!("{owned} {owned:?}").contains(PASSWORD));
}

/// Every path a SASL_SSL configuration can fail on, with the password searched for in the
/// errors, their `Debug`, the configuration's `Debug` and the log lines librdkafka and waybill
/// wrote meanwhile.
#[tokio::test]
async fn the_sasl_password_appears_in_no_error_debug_output_or_log() {
    let log = support::captured_log::capture();
    let stranger = TestCa::new("a CA nobody trusts");
    let tls = terminator(&stranger.server(&["localhost"])).await;
    let ca = TestCa::new("waybill kafka test CA");
    let sasl_ssl = KafkaConfig::builder(format!("localhost:{}", tls.addr.port()))
        .tls(
            KafkaTls::new()
                .ca_file(pem_file("sasl-ca.pem", &ca.cert_pem))
                .key_password(PASSWORD),
        )
        .sasl(SaslMechanism::ScramSha512, "orders", PASSWORD)
        .property("debug", "security,broker")
        .property("ssl.keystore.password", PASSWORD)
        .build()
        .expect("valid SASL_SSL config");
    assert_eq!(sasl_ssl.security_protocol(), "sasl_ssl");
    let mut printed = vec![format!("{sasl_ssl:?}")];
    let e = refused(sasl_ssl.clone()).await;
    printed.push(format!("{e} {e:?}"));
    match KafkaSubscriber::connect(sasl_ssl.clone(), "wb-tls-never", "g").await {
        Ok(_) => panic!("the subscriber should have been refused"),
        Err(e) => printed.push(format!("{e} {e:?}")),
    }
    // The same login against a broker that speaks plain Kafka (no SASL handshake).
    let plaintext = KafkaConfig::builder(brokers())
        .sasl(SaslMechanism::Plain, "orders", PASSWORD)
        .build()
        .expect("valid SASL_PLAINTEXT config");
    if let Err(e) = KafkaPublisher::connect(plaintext.clone()).await {
        printed.push(format!("{e} {e:?}"));
    }
    printed.push(format!("{plaintext:?}"));
    let logged = log.text();
    assert!(
        logged.contains("SSL") || logged.contains("ssl"),
        "librdkafka's log lines reached the capture: {logged}"
    );
    printed.push(logged);
    for text in printed {
        assert!(!text.contains(PASSWORD), "the password leaked: {text}");
    }
}
