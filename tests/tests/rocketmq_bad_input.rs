//! Bad input against the real RocketMQ servers: each gets a clear error, and the message
//! comes back unchanged.

mod support;

use std::time::Duration;

use support::rocketmq::{config, create_topic_for_test, name_server, require_broker, topic};
use waybill_core::{FailureClass, Message, PublishOutcome, Publisher};
use waybill_rocketmq::{RocketConfig, RocketPublisher, RocketSubscriber};

/// rocketmq-client-rust shares one client instance per client id within a process and
/// refuses a second configuration under the same id while the first is alive ("ClientPool
/// configuration conflicts with an existing client-id owner"): the test with a name server
/// that is down must not overlap the others. Every test holds this while its clients live.
static ONE_CONFIGURATION_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_topic_is_no_destination_yet_and_hands_the_message_back() {
    let _alone = ONE_CONFIGURATION_AT_A_TIME.lock().await;
    require_broker().await.close().await;
    let publisher = RocketPublisher::connect(config()).await.unwrap();
    let missing = topic("wb-missing");
    let message = Message::new("lost?").with_key("k");
    let id = message.id();
    let err = publisher.publish(&missing, message).await.unwrap_err();
    println!("publish to an unknown topic: {err}");
    assert_eq!(err.outcome(), PublishOutcome::NoDestination, "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert_eq!(err.message().id(), id);
    assert_eq!(err.message().payload().as_ref(), b"lost?");

    let err = RocketSubscriber::connect(config(), &missing, "wb-g-missing")
        .await
        .err()
        .expect("subscribing to an unknown topic fails");
    println!("subscribe to an unknown topic: {err}");
    assert_eq!(err.class(), FailureClass::Permanent);
    assert!(err.to_string().contains("does not exist"), "{err}");
    publisher.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_permanent_and_only_they_fail() {
    let _alone = ONE_CONFIGURATION_AT_A_TIME.lock().await;
    let topic = create_topic_for_test("wb-big").await;
    let publisher = RocketPublisher::connect(config()).await.unwrap();
    let big = Message::new(vec![b'x'; 4 * 1024 * 1024 + 1]).with_key("big");
    let small = Message::new("fits").with_key("small");
    let (big_id, small_id) = (big.id(), small.id());
    let results = publisher.publish_batch(&topic, vec![big, small]).await;
    let err = results[0].as_ref().unwrap_err();
    println!("oversized (checked before sending): {err}");
    assert_eq!(err.outcome(), PublishOutcome::Permanent);
    assert_eq!(err.message().id(), big_id);
    assert!(err.to_string().contains("exceeds the limit"), "{err}");
    assert_eq!(results[1].as_ref().unwrap().message_id, small_id);
    publisher.close().await.unwrap();

    // With the client's limit raised above the broker's (4 MiB), the broker itself refuses.
    let lenient = RocketConfig::builder(name_server())
        .max_message_bytes(16 * 1024 * 1024)
        .build()
        .unwrap();
    let publisher = RocketPublisher::connect(lenient).await.unwrap();
    // Incompressible, so that the client's compression (bodies over 4 KiB) cannot shrink it.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let body: Vec<u8> = (0..6 * 1024 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect();
    let big = Message::new(body).with_key("big");
    let err = publisher.publish(&topic, big).await.unwrap_err();
    println!("oversized (refused by the broker): {err}");
    assert_eq!(err.outcome(), PublishOutcome::Permanent, "{err}");
    assert_eq!(err.message().payload().len(), 6 * 1024 * 1024);
    publisher.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_server_down_is_a_clear_transient_error() {
    let _alone = ONE_CONFIGURATION_AT_A_TIME.lock().await;
    let down = RocketConfig::builder("127.0.0.1:1")
        .send_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let publisher = RocketPublisher::connect(down.clone()).await.unwrap();
    let message = Message::new("hello").with_key("k");
    let id = message.id();
    let err = publisher.publish("wb-any", message).await.unwrap_err();
    println!("publish with the name server down: {err}");
    assert!(err.is_retryable(), "{err}");
    assert_eq!(err.message().id(), id);
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");

    let err = RocketSubscriber::connect(down, "wb-any", "wb-g")
        .await
        .err()
        .expect("subscribing without a name server fails");
    println!("subscribe with the name server down: {err}");
    assert!(err.is_transient(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_names_headers_and_settings_are_refused() {
    let _alone = ONE_CONFIGURATION_AT_A_TIME.lock().await;
    let publisher = RocketPublisher::connect(config()).await.unwrap();
    let err = publisher
        .publish("orders.v1", Message::new("x"))
        .await
        .unwrap_err();
    assert_eq!(err.outcome(), PublishOutcome::Permanent);
    assert!(err.to_string().contains("orders.v1"), "{err}");
    let err = publisher
        .publish("orders", Message::new("x").with_header("TAGS", "a"))
        .await
        .unwrap_err();
    assert_eq!(err.outcome(), PublishOutcome::Permanent);
    assert!(err.to_string().contains("system property"), "{err}");
    let err = publisher
        .publish("orders", Message::new(""))
        .await
        .unwrap_err();
    assert_eq!(err.outcome(), PublishOutcome::Permanent);
    publisher.close().await.unwrap();

    assert_eq!(
        RocketConfig::builder(" ").build().unwrap_err().field(),
        "name_server"
    );
    let err = RocketConfig::builder("127.0.0.1:9876")
        .producer_group("bad group")
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "producer_group");
}
