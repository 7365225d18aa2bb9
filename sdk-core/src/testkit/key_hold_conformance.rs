//! The checks every [`KeyHoldStore`] passes against its real database: run
//! [`check_key_hold_store`] on a fresh store.
//!
//! ```
//! use waybill_core::testkit::key_hold_conformance::check_key_hold_store;
//! use waybill_core::InMemoryKeyHolds;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! check_key_hold_store(&InMemoryKeyHolds::new()).await;
//! # }
//! ```

use crate::key_holds::KeyHoldStore;
use crate::message_id::MessageId;

/// Checks, with fresh group names so a shared database may serve several runs:
/// - a key is held behind the first dead message, and a second hold keeps the first;
/// - a release by another message leaves the hold, a release by the head lifts it;
/// - the operator's release lifts a hold whoever it waits for and says which it was;
/// - two groups, and two keys of one group, hold independently; `holds` lists a group's
///   holds oldest first, up to its limit;
/// - keys compare exactly (case and trailing spaces count).
///
/// # Panics
/// On the first check the store fails, naming it; on a store error.
pub async fn check_key_hold_store(store: &dyn KeyHoldStore) {
    let suffix = MessageId::new().to_string();
    let group = format!("holds-{suffix}");
    let other_group = format!("holds-other-{suffix}");
    let (head, later, elsewhere) = (MessageId::new(), MessageId::new(), MessageId::new());
    let ok = |what: &str| format!("key hold store: {what}");

    assert_eq!(
        store.held_behind(&group, "k").await.expect("read"),
        None,
        "{}",
        ok("a new key is free")
    );
    assert_eq!(
        store.hold(&group, "k", head).await.expect("hold"),
        head,
        "{}",
        ok("the first hold wins")
    );
    assert_eq!(
        store.hold(&group, "k", later).await.expect("hold"),
        head,
        "{}",
        ok("a second hold keeps the first")
    );
    assert_eq!(
        store.held_behind(&group, "k").await.expect("read"),
        Some(head),
        "{}",
        ok("the hold reads back")
    );
    for free in ["K", "k ", "k2"] {
        assert_eq!(
            store.held_behind(&group, free).await.expect("read"),
            None,
            "{}",
            ok(&format!("key {free:?} is another key"))
        );
    }
    assert_eq!(
        store.held_behind(&other_group, "k").await.expect("read"),
        None,
        "{}",
        ok("groups hold independently")
    );
    assert_eq!(
        store
            .hold(&other_group, "k", elsewhere)
            .await
            .expect("hold"),
        elsewhere,
        "{}",
        ok("another group holds its own")
    );

    assert!(
        !store.release(&group, "k", later).await.expect("release"),
        "{}",
        ok("a release by another message changes nothing")
    );
    assert_eq!(
        store.held_behind(&group, "k").await.expect("read"),
        Some(head),
        "{}",
        ok("still held")
    );
    assert!(
        store.release(&group, "k", head).await.expect("release"),
        "{}",
        ok("the head's release lifts the hold")
    );
    assert_eq!(
        store.held_behind(&group, "k").await.expect("read"),
        None,
        "{}",
        ok("lifted")
    );
    assert!(
        !store.release(&group, "k", head).await.expect("release"),
        "{}",
        ok("a second release finds nothing")
    );
    assert_eq!(
        store.held_behind(&other_group, "k").await.expect("read"),
        Some(elsewhere),
        "{}",
        ok("the other group's hold stays")
    );

    let (first, second) = (MessageId::new(), MessageId::new());
    store.hold(&group, "a", first).await.expect("hold");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    store.hold(&group, "b", second).await.expect("hold");
    let listed = store.holds(&group, 10).await.expect("list");
    let keys: Vec<(&str, MessageId)> = listed.iter().map(|h| (h.key.as_str(), h.behind)).collect();
    assert_eq!(
        keys,
        vec![("a", first), ("b", second)],
        "{}",
        ok("holds lists the group's holds, oldest first")
    );
    assert!(
        listed[0].since <= listed[1].since,
        "{}",
        ok("hold times are kept")
    );
    assert_eq!(
        store.holds(&group, 1).await.expect("list").len(),
        1,
        "{}",
        ok("holds keeps to its limit")
    );

    assert_eq!(
        store.release_key(&group, "a").await.expect("release"),
        Some(first),
        "{}",
        ok("the operator's release names the head")
    );
    assert_eq!(
        store.release_key(&group, "a").await.expect("release"),
        None,
        "{}",
        ok("releasing a free key finds nothing")
    );
    assert_eq!(
        store.holds(&group, 10).await.expect("list").len(),
        1,
        "{}",
        ok("one hold left")
    );
    store.release_key(&group, "b").await.expect("release");
    store.release_key(&other_group, "k").await.expect("release");
}
