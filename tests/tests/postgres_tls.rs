//! PostgreSQL over TLS, against clusters the tests start with certificates they make:
//! `sslmode=verify-full` with the right CA carries the outbox round trip; a CA not trusted, a
//! host name the certificate does not list (under `verify-full`), an expired certificate and
//! a wrong password each fail at once with an error that says so, is not transient, and never shows the password.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::postgres_tls::{TlsPostgres, PASSWORD};
use support::test_certificates::TestCa;
use waybill_core::{MemoryBroker, Message};
use waybill_outbox::{Outbox, OutboxError, Relay, RelayConfig};

/// Connects through `waybill_outbox::postgres::connect`, expecting a failure.
async fn refused(url: &str) -> OutboxError {
    match waybill_outbox::postgres::connect(url, 1).await {
        Ok(_) => panic!("{url} connected, but it should have been refused"),
        Err(e) => e,
    }
}

/// Asserts `error` is a TLS failure that is not transient and whose message contains `says`.
fn assert_tls_failure(error: &OutboxError, says: &str) {
    assert!(
        matches!(error, OutboxError::Tls { .. }),
        "expected a TLS failure: {error} / {error:?}"
    );
    assert!(!error.is_transient(), "{error}");
    assert!(error.to_string().contains(says), "{error}");
    assert!(!error.to_string().contains(PASSWORD), "{error}");
    assert!(!format!("{error:?}").contains(PASSWORD), "{error:?}");
}

#[tokio::test]
async fn verify_full_with_the_right_ca_connects_and_relays_an_enqueued_message() {
    let ca = TestCa::new("waybill test CA");
    let cluster = TlsPostgres::start(&ca.server(&["localhost"])).await;
    let ca_file = cluster.write_ca("ca", &ca);
    let url = cluster.url(
        "localhost",
        PASSWORD,
        &format!("sslmode=verify-full&sslrootcert={}", ca_file.display()),
    );
    let pool = waybill_outbox::postgres::connect(&url, 4)
        .await
        .unwrap_or_else(|e| panic!("verify-full should connect: {e}\n{}", cluster.log()));
    let (ssl, version): (bool, Option<String>) =
        sqlx::query_as("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(ssl, "the session must be encrypted");
    assert!(version.unwrap_or_default().starts_with("TLS"));

    waybill_outbox::postgres::migrate(&pool).await.unwrap();
    let message = Message::new("paid").with_key("order-1");
    let mut tx = pool.begin().await.unwrap();
    Outbox::new()
        .enqueue(&mut tx, "orders", &message)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let broker = MemoryBroker::new();
    let relay = Relay::postgres(
        pool.clone(),
        Arc::new(broker.publisher()),
        RelayConfig::default(),
    );
    for _ in 0..200 {
        relay.relay_once().await.unwrap();
        if !broker.messages("orders").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let published = broker.messages("orders");
    assert_eq!(published.len(), 1, "the committed row was relayed once");
    assert_eq!(published[0].id(), message.id());
    pool.close().await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_fails_verification_for_good() {
    let ca = TestCa::new("waybill test CA");
    let cluster = TlsPostgres::start(&ca.server(&["localhost"])).await;
    let other = cluster.write_ca("other-ca", &TestCa::new("some other CA"));
    for mode in ["verify-full", "verify-ca"] {
        let error = refused(&cluster.url(
            "localhost",
            PASSWORD,
            &format!("sslmode={mode}&sslrootcert={}", other.display()),
        ))
        .await;
        assert_tls_failure(&error, "certificate verification failed");
        assert!(error.to_string().contains("trusted CA"), "{error}");
    }
}

#[tokio::test]
async fn a_host_name_the_certificate_does_not_list_is_refused() {
    let ca = TestCa::new("waybill test CA");
    let cluster = TlsPostgres::start(&ca.server(&["localhost"])).await;
    let ca_file = cluster.write_ca("ca", &ca);
    let params = |mode: &str| format!("sslmode={mode}&sslrootcert={}", ca_file.display());
    let error = refused(&cluster.url("127.0.0.1", PASSWORD, &params("verify-full"))).await;
    assert_tls_failure(&error, "host name");
    assert!(error.to_string().contains("127.0.0.1"), "{error}");
    // verify-ca checks the CA; by the name the certificate lists it connects. (Under another
    // name sqlx 0.8.6 refuses verify-ca too with rustls 0.23.46: it only skips the older
    // NotValidForName error, not NotValidForNameContext. Stricter than libpq, so not tested.)
    let pool = waybill_outbox::postgres::connect(
        &cluster.url("localhost", PASSWORD, &params("verify-ca")),
        1,
    )
    .await
    .unwrap();
    pool.close().await;
}

#[tokio::test]
async fn an_expired_server_certificate_is_refused() {
    let ca = TestCa::new("waybill test CA");
    let cluster = TlsPostgres::start(&ca.expired_server(&["localhost"])).await;
    let ca_file = cluster.write_ca("ca", &ca);
    let error = refused(&cluster.url(
        "localhost",
        PASSWORD,
        &format!("sslmode=verify-full&sslrootcert={}", ca_file.display()),
    ))
    .await;
    assert_tls_failure(&error, "expired");
}

#[tokio::test]
async fn a_wrong_password_is_refused_without_showing_any_password() {
    let ca = TestCa::new("waybill test CA");
    let cluster = TlsPostgres::start(&ca.server(&["localhost"])).await;
    let ca_file = cluster.write_ca("ca", &ca);
    let attempted = "Wrong-Guess-4k2m";
    let error = refused(&cluster.url(
        "localhost",
        attempted,
        &format!("sslmode=verify-full&sslrootcert={}", ca_file.display()),
    ))
    .await;
    assert!(matches!(error, OutboxError::Refused(_)), "{error:?}");
    assert!(!error.is_transient());
    assert!(
        error.to_string().contains("password authentication failed"),
        "{error}"
    );
    for secret in [attempted, PASSWORD] {
        assert!(!error.to_string().contains(secret), "{error}");
        assert!(!format!("{error:?}").contains(secret), "{error:?}");
    }
}
