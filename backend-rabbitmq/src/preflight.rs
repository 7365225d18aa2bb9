//! Durability preflight on RabbitMQ: what the exchange, the queues bound to it and the
//! cluster do to the guarantee, read through the management HTTP API.

use serde_json::Value;
use waybill_core::preflight::{Check, PreflightReport};
use waybill_core::BrokerError;

use crate::management_api::ManagementApi;

/// Checks `topic` (its exchange) and every queue bound to it (directly, or through an exchange
/// bound to it, as a partitioned group's partitions are), PASS / WARN / FAIL with the reason
/// and the fix:
/// - the cluster: 3 or more running nodes pass; fewer warn (a lost disk loses every queue
///   whose replicas were there);
/// - the exchange: missing fails (a publish has nowhere to go); not durable fails (it is gone
///   after a restart, with its bindings); no queue bound warns (messages published now reach
///   no consumer group);
/// - each bound queue: a quorum queue passes, a classic one fails (its messages live on one
///   node), a stream warns (waybill's consumers read quorum queues); not durable fails; fewer
///   than 3 quorum members warn; a delivery limit (argument or policy) passes, none warns
///   (RabbitMQ 3 redelivers a poison message forever; 4 applies 20 by default); a
///   dead-letter exchange with the `at-least-once` strategy passes, `at-most-once` warns
///   (dead-lettering can drop the message), none fails when a delivery limit is set (a
///   message over it is dropped) and warns otherwise.
///
/// The first report is the exchange's (with the cluster check), then one per queue.
///
/// # Errors
/// [`BrokerError`] when the management API cannot be reached, refuses the credentials or
/// answers what cannot be read.
pub async fn rabbitmq_preflight(
    api: &ManagementApi,
    topic: &str,
) -> Result<Vec<PreflightReport>, BrokerError> {
    let vhost = api.vhost();
    let nodes = api.get(&["nodes"]).await?.unwrap_or(Value::Null);
    let running = nodes
        .as_array()
        .map_or(0, |n| n.iter().filter(|n| n["running"] == true).count());
    let mut exchange_checks = vec![cluster_check(running)];
    let Some(exchange) = api.get(&["exchanges", vhost, topic]).await? else {
        exchange_checks.push(Check::fail(
            "exchange",
            format!("exchange {topic:?} does not exist in virtual host {vhost:?}"),
            "start the topic's consumer groups (they declare it), or check the topic name \
             and the virtual host in the URL",
        ));
        return Ok(vec![report(topic, exchange_checks)]);
    };
    exchange_checks.push(if exchange["durable"] == true {
        Check::pass("exchange durable", "the exchange survives a broker restart")
    } else {
        Check::fail(
            "exchange durable",
            "the exchange is not durable: a restart deletes it and its bindings, and \
             messages published then are lost",
            "delete it and let waybill declare it (durable)",
        )
    });
    let bound = |exchange: String| async move {
        let bindings = api
            .get(&["exchanges", vhost, &exchange, "bindings", "source"])
            .await?
            .unwrap_or(Value::Null);
        let of_type = |kind: &str| -> Vec<String> {
            bindings
                .as_array()
                .into_iter()
                .flatten()
                .filter(|b| b["destination_type"] == kind)
                .filter_map(|b| b["destination"].as_str().map(str::to_owned))
                .collect()
        };
        Ok::<_, BrokerError>((of_type("queue"), of_type("exchange")))
    };
    let (mut queues, exchanges) = bound(topic.to_owned()).await?;
    // A partitioned group's queues are bound to its partition exchange, itself bound to the
    // topic's.
    for exchange in exchanges {
        queues.extend(bound(exchange).await?.0);
    }
    queues.sort();
    queues.dedup();
    exchange_checks.push(if queues.is_empty() {
        Check::warn(
            "bound queues",
            "no queue is bound: a message published now reaches no consumer group (waybill's \
             publisher reports it as having no destination)",
            "start the topic's consumer groups before its producers",
        )
    } else {
        Check::pass("bound queues", format!("bound: {}", queues.join(", ")))
    });
    let mut reports = vec![report(topic, exchange_checks)];
    for queue in queues {
        if let Some(info) = api.get(&["queues", vhost, &queue]).await? {
            reports.push(PreflightReport {
                target: format!("rabbitmq queue {queue}"),
                checks: queue_checks(&info),
            });
        }
    }
    Ok(reports)
}

fn report(topic: &str, checks: Vec<Check>) -> PreflightReport {
    PreflightReport {
        target: format!("rabbitmq exchange {topic}"),
        checks,
    }
}

fn cluster_check(running: usize) -> Check {
    if running >= 3 {
        Check::pass("cluster size", format!("{running} running nodes"))
    } else {
        Check::warn(
            "cluster size",
            format!(
                "{running} running node(s): losing a node's disk loses the queues whose \
                 replicas were on it"
            ),
            "run 3 or more nodes, and quorum queues with 3 or more members",
        )
    }
}

/// A queue argument or, failing that, the value of the policy in effect.
fn setting<'a>(info: &'a Value, argument: &str, policy_key: &str) -> Option<&'a Value> {
    info["arguments"]
        .get(argument)
        .or_else(|| info["effective_policy_definition"].get(policy_key))
        .filter(|v| !v.is_null())
}

/// The checks of one queue, from its management API record.
pub(crate) fn queue_checks(info: &Value) -> Vec<Check> {
    let mut checks = Vec::new();
    let kind = info["type"].as_str().unwrap_or("classic");
    checks.push(match kind {
        "quorum" => Check::pass(
            "queue type",
            "quorum: replicated, confirmed once on a majority",
        ),
        "stream" => Check::warn(
            "queue type",
            "stream: waybill's consumer groups read quorum queues",
            "consume this topic through a waybill consumer group (a quorum queue)",
        ),
        other => Check::fail(
            "queue type",
            format!("{other}: its messages live on one node, lost with that node's disk"),
            "use a quorum queue (x-queue-type=quorum; waybill declares its groups' queues so)",
        ),
    });
    checks.push(if info["durable"] == true {
        Check::pass("durable", "the queue survives a broker restart")
    } else {
        Check::fail(
            "durable",
            "the queue is not durable: a restart deletes it with its messages",
            "declare it durable",
        )
    });
    if kind == "quorum" {
        let members = info["members"].as_array().map_or(0, Vec::len);
        checks.push(if members >= 3 {
            Check::pass("replicas", format!("{members} members"))
        } else {
            Check::warn(
                "replicas",
                format!("{members} member(s): a confirmed message is on fewer than 3 nodes"),
                "grow the queue to 3 members (rabbitmq-queues grow, or \
                 x-quorum-initial-group-size=3 on a cluster of 3 or more)",
            )
        });
    }
    let limit = setting(info, "x-delivery-limit", "delivery-limit");
    checks.push(match limit {
        Some(limit) => Check::pass("delivery limit", format!("{limit} deliveries")),
        None => Check::warn(
            "delivery limit",
            "none: on RabbitMQ 3 a message that crashes its consumer is delivered forever (on \
             4 a default of 20 applies)",
            "set x-delivery-limit or a delivery-limit policy (waybill's groups set one)",
        ),
    });
    let exchange = setting(info, "x-dead-letter-exchange", "dead-letter-exchange");
    let strategy = setting(info, "x-dead-letter-strategy", "dead-letter-strategy")
        .and_then(Value::as_str)
        .unwrap_or("at-most-once");
    checks.push(match (exchange, strategy) {
        (Some(_), "at-least-once") => Check::pass(
            "dead letters",
            "routed to a dead-letter exchange, at least once",
        ),
        (Some(_), _) => Check::warn(
            "dead letters",
            "dead-lettered at most once: a message can be dropped on its way to the \
             dead-letter queue",
            "set x-dead-letter-strategy=at-least-once with x-overflow=reject-publish",
        ),
        (None, _) if limit.is_some() => Check::fail(
            "dead letters",
            "no dead-letter exchange: a message over the delivery limit is dropped",
            "set x-dead-letter-exchange (waybill's groups route to <topic>.<group>.dlq)",
        ),
        (None, _) => Check::warn(
            "dead letters",
            "no dead-letter exchange: a rejected or expired message is dropped",
            "set x-dead-letter-exchange (waybill's groups route to <topic>.<group>.dlq)",
        ),
    });
    checks
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use waybill_core::preflight::Verdict;

    use super::*;

    fn verdicts(info: &Value) -> Vec<(&'static str, Verdict)> {
        queue_checks(info)
            .into_iter()
            .map(|c| (c.name, c.verdict))
            .collect()
    }

    #[test]
    fn a_waybill_group_queue_passes_except_for_its_replicas_on_one_node() {
        let info = json!({
            "type": "quorum", "durable": true, "members": ["rabbit@a"],
            "arguments": {"x-delivery-limit": 5, "x-dead-letter-exchange": "",
                          "x-dead-letter-strategy": "at-least-once"}
        });
        assert_eq!(
            verdicts(&info),
            vec![
                ("queue type", Verdict::Pass),
                ("durable", Verdict::Pass),
                ("replicas", Verdict::Warn),
                ("delivery limit", Verdict::Pass),
                ("dead letters", Verdict::Pass),
            ]
        );
    }

    #[test]
    fn a_classic_transient_queue_fails_and_policies_count_like_arguments() {
        let classic = json!({"type": "classic", "durable": false, "arguments": {}});
        let found = verdicts(&classic);
        assert!(found.contains(&("queue type", Verdict::Fail)), "{found:?}");
        assert!(found.contains(&("durable", Verdict::Fail)), "{found:?}");
        assert!(
            found.contains(&("dead letters", Verdict::Warn)),
            "{found:?}"
        );
        let by_policy = json!({
            "type": "quorum", "durable": true, "members": ["a", "b", "c"], "arguments": {},
            "effective_policy_definition": {"delivery-limit": 10}
        });
        let found = verdicts(&by_policy);
        assert!(found.contains(&("replicas", Verdict::Pass)), "{found:?}");
        assert!(
            found.contains(&("delivery limit", Verdict::Pass)),
            "{found:?}"
        );
        assert!(
            found.contains(&("dead letters", Verdict::Fail)),
            "a limit without a dead-letter route drops: {found:?}"
        );
    }

    #[test]
    fn three_running_nodes_make_a_cluster() {
        assert_eq!(cluster_check(3).verdict, Verdict::Pass);
        assert_eq!(cluster_check(1).verdict, Verdict::Warn);
    }
}
