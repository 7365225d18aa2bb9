//! The durability preflight of a RocketMQ topic: what the brokers that carry it do to a
//! confirmed (`SEND_OK`) message when a process or a machine fails.
//!
//! Per broker set (a master and its slaves) of the topic's route, from the master's own
//! settings:
//!
//! | check | PASS | WARN | FAIL |
//! |---|---|---|---|
//! | `topic` | routed, readable and writable | | missing, or not writable / readable |
//! | `replicas` | the master has a slave | no slave: a lost disk loses what it held | |
//! | `brokerRole` | `SYNC_MASTER` (or controller mode with 2+ in-sync replicas) | `ASYNC_MASTER`: a failover loses what the slave had not copied | |
//! | `flushDiskType` | `SYNC_FLUSH` | `ASYNC_FLUSH` behind a `SYNC_MASTER` with a slave | `ASYNC_FLUSH` otherwise: `SEND_OK` means "in memory", a machine crash loses it |
//! | `autoCreateTopicEnable` | off | on: a misspelt topic is created instead of refused | |
//!
//! And for each consumer group named, `group topics`: its retry and dead-letter topics
//! (`<topic>_<group>_RETRY`, `<topic>_<group>_DLQ`) exist (PASS) or not yet (WARN: the group's
//! first subscriber creates them; until then nothing of the group is retried or dead-lettered).
//!
//! A setting the broker does not report is a WARN that says so.

use std::collections::HashMap;

use rocketmq_client_rust::{BrokerAdmin as _, TopicAdmin as _};
use rocketmq_model::common::mix_all::MASTER_ID;
use waybill_core::preflight::{Check, PreflightReport};
use waybill_core::BrokerError;

use crate::admin::RocketAdmin;
use crate::error_class::{broker_error_at, response_code};
use crate::names::{check_topic, GroupTopics};
use crate::runtime::RocketFuture;

/// Read permission of a topic.
const PERM_READ: u32 = 4;
/// Write permission of a topic.
const PERM_WRITE: u32 = 2;

/// What the preflight read about one broker set of a topic's route.
#[derive(Clone, Debug, Default)]
pub(crate) struct BrokerSet {
    /// The broker name shared by the master and its slaves.
    pub name: String,
    /// The master and its slaves.
    pub copies: usize,
    /// The master's settings; `None` when the set has no master right now.
    pub master_settings: Option<HashMap<String, String>>,
    /// The topic's permission on this set (read 4, write 2).
    pub perm: u32,
    /// The topic's write queues on this set.
    pub write_queues: u32,
}

/// Checks how the brokers carrying `topic` keep a confirmed message, and whether the retry
/// and dead-letter topics of each of `groups` exist (see the module docs).
///
/// ```no_run
/// # async fn demo() -> Result<(), waybill_core::BrokerError> {
/// use waybill_rocketmq::{rocketmq_preflight, RocketAdmin, RocketConfig};
///
/// let config = RocketConfig::builder("127.0.0.1:9876").build().unwrap();
/// let admin = RocketAdmin::connect(&config).await?;
/// let report = rocketmq_preflight(&admin, "orders", &["billing"]).await?;
/// for check in &report.checks {
///     println!("{} {} {}", check.verdict, check.name, check.reason);
/// }
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// [`BrokerError`]: permanent for an invalid topic or group name; transient when the name
/// server or a broker does not answer. A topic that does not exist is a FAIL in the report,
/// not an error.
pub fn rocketmq_preflight<'a>(
    admin: &'a RocketAdmin,
    topic: &'a str,
    groups: &'a [&'a str],
) -> RocketFuture<'a, Result<PreflightReport, BrokerError>> {
    crate::runtime::boxed(async move {
        let invalid =
            |e: crate::names::InvalidName| BrokerError::permanent("preflight", e.to_string());
        check_topic(topic).map_err(invalid)?;
        let sets = read_broker_sets(admin, topic).await?;
        let mut report = judge(topic, &sets);
        for group in groups {
            let names = GroupTopics::new(topic, group).map_err(invalid)?;
            let mut missing = Vec::new();
            for derived in [&names.retry, &names.dead_letter] {
                if read_broker_sets(admin, derived).await?.is_empty() {
                    missing.push(derived.as_str());
                }
            }
            report.checks.push(group_topics_check(group, &missing));
        }
        Ok(report)
    })
}

fn group_topics_check(group: &str, missing: &[&str]) -> Check {
    if missing.is_empty() {
        Check::pass(
            "group topics",
            format!("group {group}: its retry and dead-letter topics exist"),
        )
    } else {
        Check::warn(
            "group topics",
            format!(
                "group {group}: {} missing, so nothing of the group can be retried or \
                 dead-lettered yet (its first subscriber creates them)",
                missing.join(" and ")
            ),
            "start a subscriber of the group once, or RocketAdmin::ensure_group_topics",
        )
    }
}

/// Reads the topic's route and the settings of each master in it; no set when the topic has
/// no route.
async fn read_broker_sets(admin: &RocketAdmin, topic: &str) -> Result<Vec<BrokerSet>, BrokerError> {
    let client = admin.client().lock().await;
    let name_server = admin.name_server();
    let route = match client.examine_topic_route_info(topic.into()).await {
        Ok(Some(route)) => route,
        Ok(None) => return Ok(Vec::new()),
        Err(e) if response_code(&e) == Some(17) => return Ok(Vec::new()),
        Err(e) => return Err(broker_error_at("preflight", &e, Some(name_server))),
    };
    let mut sets = Vec::new();
    for broker in &route.broker_datas {
        let queues = route
            .queue_datas
            .iter()
            .find(|q| q.broker_name() == broker.broker_name());
        let master_settings = match broker.broker_addrs().get(&MASTER_ID) {
            Some(addr) => Some(
                client
                    .get_broker_config(addr.clone())
                    .await
                    .map_err(|e| broker_error_at("preflight", &e, Some(name_server)))?
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            None => None,
        };
        sets.push(BrokerSet {
            name: broker.broker_name().to_string(),
            copies: broker.broker_addrs().len(),
            master_settings,
            perm: queues.map_or(0, |q| q.perm()),
            write_queues: queues.map_or(0, |q| q.write_queue_nums()),
        });
    }
    Ok(sets)
}

/// The checks for `topic` on `sets` (empty: the topic has no route).
pub(crate) fn judge(topic: &str, sets: &[BrokerSet]) -> PreflightReport {
    let mut checks = Vec::new();
    if sets.is_empty() {
        checks.push(Check::fail(
            "topic",
            format!("topic {topic} does not exist (the name server has no route for it)"),
            "create it on every master (RocketAdmin::create_topic, or mqadmin updateTopic)",
        ));
    }
    for set in sets {
        checks.push(topic_check(topic, set));
        checks.push(replicas_check(set));
        let Some(settings) = &set.master_settings else {
            checks.push(Check::warn(
                "brokerRole",
                format!("broker {} has no master right now", set.name),
                "run the preflight again once the master is back",
            ));
            continue;
        };
        checks.push(role_check(set, settings));
        checks.push(flush_check(set, settings));
        checks.push(auto_create_check(set, settings));
    }
    PreflightReport {
        target: format!("rocketmq topic {topic}"),
        checks,
    }
}

fn topic_check(topic: &str, set: &BrokerSet) -> Check {
    let missing: Vec<&str> = [(PERM_READ, "read"), (PERM_WRITE, "write")]
        .into_iter()
        .filter(|(bit, _)| set.perm & bit == 0)
        .map(|(_, name)| name)
        .collect();
    if missing.is_empty() {
        Check::pass(
            "topic",
            format!(
                "{topic} on broker {}: {} write queues, readable and writable",
                set.name, set.write_queues
            ),
        )
    } else {
        Check::fail(
            "topic",
            format!(
                "{topic} on broker {} lacks {} permission (perm {})",
                set.name,
                missing.join(" and "),
                set.perm
            ),
            "give the topic read and write permission (perm 6) on this broker",
        )
    }
}

fn replicas_check(set: &BrokerSet) -> Check {
    if set.copies >= 2 {
        Check::pass(
            "replicas",
            format!(
                "broker {}: a master and {} slaves",
                set.name,
                set.copies - 1
            ),
        )
    } else {
        Check::warn(
            "replicas",
            format!(
                "broker {} has no slave: a lost disk loses every message it held",
                set.name
            ),
            "add a slave (brokerId 1) to this broker set, or run in controller mode",
        )
    }
}

fn setting<'a>(settings: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    settings.get(name).map(|v| v.trim())
}

fn role_check(set: &BrokerSet, settings: &HashMap<String, String>) -> Check {
    if setting(settings, "enableControllerMode") == Some("true") {
        let in_sync = setting(settings, "minInSyncReplicas")
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(1);
        return if in_sync >= 2 {
            Check::pass(
                "brokerRole",
                format!(
                    "broker {}: controller mode, {in_sync} in-sync replicas before SEND_OK",
                    set.name
                ),
            )
        } else {
            Check::warn(
                "brokerRole",
                format!(
                    "broker {}: controller mode with minInSyncReplicas {in_sync}: SEND_OK \
                     before a second copy exists",
                    set.name
                ),
                "set minInSyncReplicas to 2 or more (and allAckInSyncStateSet)",
            )
        };
    }
    match setting(settings, "brokerRole") {
        Some("SYNC_MASTER") => Check::pass(
            "brokerRole",
            format!(
                "broker {}: SYNC_MASTER, a slave has each message before SEND_OK",
                set.name
            ),
        ),
        Some(role) => Check::warn(
            "brokerRole",
            format!(
                "broker {}: {role}: SEND_OK before a slave has the message, so a failover \
                 loses what it had not copied",
                set.name
            ),
            "set brokerRole = SYNC_MASTER (with a slave)",
        ),
        None => Check::warn(
            "brokerRole",
            format!("broker {} does not report brokerRole", set.name),
            "check the broker's configuration by hand",
        ),
    }
}

fn flush_check(set: &BrokerSet, settings: &HashMap<String, String>) -> Check {
    let replicated = set.copies >= 2 && setting(settings, "brokerRole") == Some("SYNC_MASTER");
    match setting(settings, "flushDiskType") {
        Some("SYNC_FLUSH") => Check::pass(
            "flushDiskType",
            format!("broker {}: SYNC_FLUSH, SEND_OK means on disk", set.name),
        ),
        Some(flush) if replicated => Check::warn(
            "flushDiskType",
            format!(
                "broker {}: {flush}: SEND_OK means in memory on the master and its slave; \
                 losing both machines at once loses it",
                set.name
            ),
            "set flushDiskType = SYNC_FLUSH",
        ),
        Some(flush) => Check::fail(
            "flushDiskType",
            format!(
                "broker {}: {flush} without a synchronous slave: SEND_OK means in memory, and a \
                 machine crash loses confirmed messages",
                set.name
            ),
            "set flushDiskType = SYNC_FLUSH (or add a SYNC_MASTER slave)",
        ),
        None => Check::warn(
            "flushDiskType",
            format!("broker {} does not report flushDiskType", set.name),
            "check the broker's configuration by hand",
        ),
    }
}

fn auto_create_check(set: &BrokerSet, settings: &HashMap<String, String>) -> Check {
    match setting(settings, "autoCreateTopicEnable") {
        Some("true") => Check::warn(
            "autoCreateTopicEnable",
            format!(
                "broker {}: topics are created on first use, so a misspelt topic takes messages \
                 nobody reads instead of being refused",
                set.name
            ),
            "set autoCreateTopicEnable = false and create topics explicitly",
        ),
        Some(_) => Check::pass(
            "autoCreateTopicEnable",
            format!("broker {}: topics are created explicitly", set.name),
        ),
        None => Check::warn(
            "autoCreateTopicEnable",
            format!("broker {} does not report autoCreateTopicEnable", set.name),
            "check the broker's configuration by hand",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use waybill_core::preflight::Verdict;

    fn set(copies: usize, settings: &[(&str, &str)]) -> BrokerSet {
        BrokerSet {
            name: "broker-a".into(),
            copies,
            master_settings: Some(
                settings
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            perm: 6,
            write_queues: 4,
        }
    }

    fn verdict_of(report: &PreflightReport, name: &str) -> Verdict {
        report
            .checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no {name} check"))
            .verdict
    }

    #[test]
    fn a_replicated_synchronous_set_passes_everything() {
        let report = judge(
            "orders",
            &[set(
                2,
                &[
                    ("brokerRole", "SYNC_MASTER"),
                    ("flushDiskType", "SYNC_FLUSH"),
                    ("autoCreateTopicEnable", "false"),
                ],
            )],
        );
        assert_eq!(report.verdict(), Verdict::Pass, "{report:?}");
        assert_eq!(report.target, "rocketmq topic orders");
    }

    #[test]
    fn asynchronous_flush_fails_unless_a_synchronous_slave_holds_the_message() {
        let alone = judge(
            "t",
            &[set(
                1,
                &[
                    ("brokerRole", "ASYNC_MASTER"),
                    ("flushDiskType", "ASYNC_FLUSH"),
                ],
            )],
        );
        assert_eq!(verdict_of(&alone, "flushDiskType"), Verdict::Fail);
        assert_eq!(verdict_of(&alone, "replicas"), Verdict::Warn);
        assert_eq!(verdict_of(&alone, "brokerRole"), Verdict::Warn);
        let async_slave = judge(
            "t",
            &[set(
                2,
                &[
                    ("brokerRole", "ASYNC_MASTER"),
                    ("flushDiskType", "ASYNC_FLUSH"),
                ],
            )],
        );
        assert_eq!(verdict_of(&async_slave, "flushDiskType"), Verdict::Fail);
        let sync_slave = judge(
            "t",
            &[set(
                2,
                &[
                    ("brokerRole", "SYNC_MASTER"),
                    ("flushDiskType", "ASYNC_FLUSH"),
                ],
            )],
        );
        assert_eq!(verdict_of(&sync_slave, "flushDiskType"), Verdict::Warn);
    }

    #[test]
    fn controller_mode_counts_in_sync_replicas() {
        let two = judge(
            "t",
            &[set(
                3,
                &[("enableControllerMode", "true"), ("minInSyncReplicas", "2")],
            )],
        );
        assert_eq!(verdict_of(&two, "brokerRole"), Verdict::Pass);
        let one = judge("t", &[set(3, &[("enableControllerMode", "true")])]);
        assert_eq!(verdict_of(&one, "brokerRole"), Verdict::Warn);
    }

    #[test]
    fn missing_group_topics_warn() {
        assert_eq!(group_topics_check("g", &[]).verdict, Verdict::Pass);
        let missing = group_topics_check("g", &["t_g_DLQ"]);
        assert_eq!(missing.verdict, Verdict::Warn);
        assert!(missing.reason.contains("t_g_DLQ"), "{}", missing.reason);
    }

    #[test]
    fn a_missing_or_read_only_topic_fails_and_unreported_settings_warn() {
        assert_eq!(judge("t", &[]).verdict(), Verdict::Fail);
        let mut read_only = set(2, &[]);
        read_only.perm = PERM_READ;
        let report = judge("t", &[read_only]);
        assert_eq!(verdict_of(&report, "topic"), Verdict::Fail);
        assert_eq!(verdict_of(&report, "flushDiskType"), Verdict::Warn);
        assert_eq!(verdict_of(&report, "autoCreateTopicEnable"), Verdict::Warn);
        let auto = judge("t", &[set(2, &[("autoCreateTopicEnable", "true")])]);
        assert_eq!(verdict_of(&auto, "autoCreateTopicEnable"), Verdict::Warn);
        let mut headless = set(2, &[]);
        headless.master_settings = None;
        assert_eq!(
            verdict_of(&judge("t", &[headless]), "brokerRole"),
            Verdict::Warn
        );
    }
}
