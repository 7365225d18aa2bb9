//! RocketMQ ACL credentials and TLS against the real servers.
//!
//! The local servers do not enforce ACL, so the test checks what an enforcing server would
//! check: every request the clients send carries the access key and a signature, the secret
//! key never crosses the wire, and the signed requests still work end to end. TLS runs
//! through a terminator with test certificates in front of the name server (the local servers
//! speak plain TCP): a trusted certificate reaches it, an untrusted one is refused. The client
//! library reports a refused handshake as a plain connection failure without its cause, so
//! that error is transient and says what to check.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use support::rocketmq::{create_topic_for_test, name_server, require_broker, QUEUES};
use support::tcp_recorder::TcpRecorder;
use support::test_certificates::TestCa;
use support::tls_terminator::TlsTerminator;
use waybill_core::{Message, Publisher, Subscriber};
use waybill_rocketmq::{RocketAdmin, RocketConfig, RocketPublisher, RocketSubscriber, RocketTls};

const ACCESS_KEY: &str = "wb-access-key-7";
const SECRET_KEY: &str = "wb-secret-key-never-on-the-wire";

fn name_server_addr() -> SocketAddr {
    let first = name_server()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    std::net::ToSocketAddrs::to_socket_addrs(&first)
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| panic!("WAYBILL_ROCKETMQ_NAMESRV names no usable address: {first}"))
}

fn pem_file(name: &str, pem: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("waybill-rocket-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, pem).expect("write PEM");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_credentials_sign_every_request_and_the_secret_never_leaves() {
    let log = support::captured_log::capture();
    let topic = create_topic_for_test("wb-acl").await;
    let recorder = TcpRecorder::start(name_server_addr()).await;
    let config = RocketConfig::builder(recorder.addr.to_string())
        .acl(ACCESS_KEY, SECRET_KEY)
        .queues_per_topic(QUEUES)
        .poll_timeout(Duration::from_millis(200))
        .build()
        .expect("valid ACL config");
    assert_eq!(config.access_key(), Some(ACCESS_KEY));
    let publisher = RocketPublisher::connect(config.clone()).await.unwrap();
    let mut subscriber = RocketSubscriber::connect(config.clone(), &topic, "wb_acl_group")
        .await
        .unwrap();
    publisher
        .publish(&topic, Message::new("signed").with_key("k"))
        .await
        .unwrap_or_else(|e| panic!("a signed publish: {e}"));
    let delivery = tokio::time::timeout(Duration::from_secs(60), subscriber.receive())
        .await
        .expect("the signed consumer receives within 60 s")
        .unwrap()
        .expect("the subscriber is open");
    assert_eq!(delivery.message().message().payload().as_ref(), b"signed");
    delivery.ack().await.unwrap();
    subscriber.close().await.unwrap();
    publisher.close().await.unwrap();

    let wire = recorder.sent_text();
    assert!(
        wire.contains(ACCESS_KEY),
        "the requests to the name server carry the access key"
    );
    assert!(wire.contains("Signature"), "and a signature");
    assert!(!wire.contains(SECRET_KEY), "the secret key was sent");
    let printed = format!("{config:?} {}", log.text());
    assert!(
        !printed.contains(SECRET_KEY),
        "the secret key leaked: {printed}"
    );
    assert!(printed.contains(ACCESS_KEY), "{printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_name_server_is_reached_over_tls_with_a_trusted_certificate() {
    require_broker().await.close().await;
    let ca = TestCa::new("waybill rocketmq test CA");
    let tls =
        TlsTerminator::start(&ca.server(&["localhost", "127.0.0.1"]), name_server_addr()).await;
    let config = RocketConfig::builder(tls.addr.to_string())
        .tls(RocketTls::new().ca_file(pem_file("ca.pem", &ca.cert_pem)))
        .build()
        .expect("valid TLS config");
    assert!(config.uses_tls());
    let admin = RocketAdmin::connect(&config).await.unwrap();
    admin
        .topic_queues("waybill_probe")
        .await
        .unwrap_or_else(|e| panic!("a route query over TLS: {e}"));
    admin.close().await;
    assert!(
        tls.handshakes() >= 1,
        "the client spoke TLS to the terminator"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_server_certificate_no_trusted_ca_signed_is_refused() {
    let ca = TestCa::new("waybill rocketmq test CA");
    let stranger = TestCa::new("a CA nobody trusts");
    let tls = TlsTerminator::start(
        &stranger.server(&["localhost", "127.0.0.1"]),
        name_server_addr(),
    )
    .await;
    let config = RocketConfig::builder(tls.addr.to_string())
        .tls(RocketTls::new().ca_file(pem_file("trusted.pem", &ca.cert_pem)))
        .acl(ACCESS_KEY, SECRET_KEY)
        .build()
        .expect("valid TLS config");
    let admin = RocketAdmin::connect(&config).await.unwrap();
    let e = admin
        .topic_queues("waybill_probe")
        .await
        .expect_err("an untrusted certificate is refused");
    admin.close().await;
    assert_eq!(tls.handshakes(), 0, "{e}");
    // rocketmq-client-rust reports the refused handshake as a plain connection failure (it
    // redacts the cause), so the error can only say that TLS is on and what to check.
    assert!(e.to_string().contains("over TLS"), "{e}");
    assert!(e.to_string().contains("CA file"), "{e}");
    let text = format!("{e} {e:?}");
    assert!(!text.contains(SECRET_KEY), "{text}");
    println!("untrusted certificate: {e}");
}

#[tokio::test]
async fn bad_security_settings_are_refused_before_connecting() {
    let missing = RocketConfig::builder("127.0.0.1:9876")
        .tls(RocketTls::new().client_certificate("/nonexistent/c.pem", "/nonexistent/c.key"))
        .build()
        .unwrap_err();
    assert_eq!(missing.field(), "tls.client_certificate");
    let empty = RocketConfig::builder("127.0.0.1:9876")
        .acl("", SECRET_KEY)
        .build()
        .unwrap_err();
    assert_eq!(empty.field(), "acl");
    assert!(!format!("{empty} {empty:?}").contains(SECRET_KEY));
}
