//! `waybill preflight`: each topic's broker settings checked, PASS / WARN / FAIL with the
//! reason and the fix.

use serde_json::json;
use waybill_core::preflight::{PreflightReport, Verdict};
use waybill_kafka::durability_preflight;
use waybill_rabbitmq::{rabbitmq_preflight, ManagementApi};
use waybill_rocketmq::{rocketmq_preflight, RocketAdmin};

use crate::broker::{kafka_config, rocket_config};
use crate::exit::{Failure, Outcome};
use crate::output::Rows;
use crate::settings::PreflightArgs;

/// Checks every topic of `args`; exit code 4 when a check fails.
pub async fn run(mut args: PreflightArgs, json: bool) -> Outcome {
    let url = args.broker.url().map_err(Failure::Usage)?;
    let scheme = url.split("://").next().unwrap_or_default();
    let reports = match scheme {
        "kafka" | "kafkas" => kafka(&url, &args.topics).await?,
        "amqp" | "amqps" => rabbitmq(&url, args.management_url.as_deref(), &args.topics).await?,
        "rocketmq" | "rocketmqs" => rocketmq(&url, &args.topics, &args.groups).await?,
        other => {
            return Err(Failure::Usage(format!(
                "unsupported broker URL scheme {other:?}: waybill preflight takes kafka://, \
                 kafkas://, amqp://, amqps://, rocketmq:// or rocketmqs://"
            )))
        }
    };
    let mut rows = Rows::new(&["TARGET", "CHECK", "VERDICT", "REASON", "FIX"]);
    for report in &reports {
        for check in &report.checks {
            rows.push(vec![
                json!(report.target),
                json!(check.name),
                json!(check.verdict.as_str()),
                json!(check.reason),
                json!(check.fix),
            ]);
        }
    }
    println!("{}", rows.render(json));
    let failed: Vec<&str> = reports
        .iter()
        .filter(|r| r.verdict() == Verdict::Fail)
        .map(|r| r.target.as_str())
        .collect();
    if !failed.is_empty() {
        return Err(Failure::CheckFailed(format!(
            "a confirmed message can be lost on {}: see the FAIL lines",
            failed.join(", ")
        )));
    }
    Ok(())
}

async fn kafka(url: &str, topics: &[String]) -> Result<Vec<PreflightReport>, Failure> {
    let config = kafka_config(url)?;
    let mut reports = Vec::new();
    for topic in topics {
        let report = durability_preflight(&config, topic)
            .await
            .map_err(|e| Failure::Failed(e.to_string()))?;
        reports.push(report.to_preflight());
    }
    Ok(reports)
}

async fn rabbitmq(
    url: &str,
    management_url: Option<&str>,
    topics: &[String],
) -> Result<Vec<PreflightReport>, Failure> {
    let api = match management_url {
        Some(management) => ManagementApi::at(management, url),
        None => ManagementApi::beside(url),
    }
    .map_err(|e| Failure::Usage(e.to_string()))?;
    let mut reports = Vec::new();
    for topic in topics {
        reports.extend(
            rabbitmq_preflight(&api, topic)
                .await
                .map_err(|e| Failure::Failed(e.to_string()))?,
        );
    }
    Ok(reports)
}

async fn rocketmq(
    url: &str,
    topics: &[String],
    groups: &[String],
) -> Result<Vec<PreflightReport>, Failure> {
    let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
    let config = rocket_config(url)?;
    let admin = RocketAdmin::connect(&config)
        .await
        .map_err(|e| Failure::Failed(e.to_string()))?;
    let mut reports = Vec::new();
    let mut failure = None;
    for topic in topics {
        match rocketmq_preflight(&admin, topic, &groups).await {
            Ok(report) => reports.push(report),
            Err(e) => {
                failure = Some(Failure::Failed(e.to_string()));
                break;
            }
        }
    }
    admin.close().await;
    failure.map_or(Ok(reports), Err)
}
