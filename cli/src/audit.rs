//! `waybill audit`: the relay's sent log against the consumer groups' inbox markers.

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use waybill_outbox::audit::{Audit, AuditReport, AuditWindow, GroupAudit};

use crate::database::open;
use crate::exit::{Failure, Outcome};
use crate::monitoring::install_recorder;
use crate::output::Rows;
use crate::settings::{AuditArgs, RelayFlags};

/// Runs the audit and prints its table (or JSON); the exit code says whether it passed.
pub async fn run(args: AuditArgs, json: bool) -> Outcome {
    let now = SystemTime::now();
    let since = instant(&args.since, now).map_err(Failure::Usage)?;
    let until = match &args.until {
        Some(until) => instant(until, now).map_err(Failure::Usage)?,
        None => now,
    };
    let grace = humantime::parse_duration(&args.grace)
        .map_err(|e| Failure::Usage(format!("--grace {:?}: {e}", args.grace)))?;
    let max_gap = fraction(&args.max_gap).map_err(Failure::Usage)?;
    let window = AuditWindow::new(since, until, grace)
        .map_err(|_| Failure::Usage("--since must be before --until".into()))?;
    let settings = args
        .database
        .settings(RelayFlags::default())
        .map_err(Failure::Usage)?;
    let outbox = open(&settings.database_url).await?.audit_source();
    // Without a URL of its own, the inbox is the outbox's database: one pool serves both.
    let inbox = match &args.inbox_database_url {
        Some(url) => open(url).await?.audit_source(),
        None => outbox.clone(),
    };
    let metrics = match &args.prometheus_file {
        Some(_) => Some(install_recorder().map_err(Failure::Failed)?),
        None => None,
    };
    let audit = Audit::new(outbox, inbox);
    let report = audit
        .run(&args.topics, &args.groups, &window)
        .await
        .map_err(|e| Failure::Failed(e.to_string()))?;
    println!("{}", render(&report, &window, max_gap, json));
    if let (Some(path), Some(metrics)) = (&args.prometheus_file, metrics) {
        write_replacing(path, &metrics.render())
            .map_err(|e| Failure::Failed(format!("cannot write {}: {e}", path.display())))?;
    }
    judge(&report, max_gap)
}

/// Writes `text` to a temporary file beside `path`, then renames it over `path`, so a reader
/// never sees half a file.
fn write_replacing(path: &Path, text: &str) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, path)
}

/// The exit code: no data is 3, a gap above the limit 4.
fn judge(report: &AuditReport, max_gap: f64) -> Outcome {
    if report.is_empty() {
        return Err(Failure::NothingMatched(
            "the window holds no sent message of these topics and nothing these groups \
             applied: check the window, the names, and that the relay keeps a sent log \
             (--sent-log-retention-hours)"
                .into(),
        ));
    }
    let over: Vec<String> = report
        .groups
        .iter()
        .filter(|g| g.gap() > max_gap)
        .map(|g| format!("{} {}", g.group, percent(g.gap())))
        .collect();
    if over.is_empty() {
        return Ok(());
    }
    Err(Failure::CheckFailed(format!(
        "gap above {}: {}",
        percent(max_gap),
        over.join(", ")
    )))
}

fn render(report: &AuditReport, window: &AuditWindow, max_gap: f64, json: bool) -> String {
    if json {
        let groups: Vec<Value> = report.groups.iter().map(group_json).collect();
        return json!({
            "since": humantime::format_rfc3339_millis(window.since).to_string(),
            "until": humantime::format_rfc3339_millis(window.until).to_string(),
            "grace_seconds": window.grace.as_secs_f64(),
            "max_gap": max_gap,
            "passed": !report.is_empty() && report.worst_gap() <= max_gap,
            "groups": groups,
        })
        .to_string();
    }
    let mut rows = Rows::new(&[
        "GROUP",
        "TOPIC",
        "SENT",
        "APPLIED",
        "DEAD_LETTERED",
        "MISSING",
        "IN_GRACE",
        "UNEXPECTED",
        "GAP",
    ]);
    let mut samples = Vec::new();
    for group in &report.groups {
        for t in &group.topics {
            rows.push(vec![
                json!(group.group),
                json!(t.topic),
                json!(t.sent),
                json!(t.applied),
                json!(t.dead_lettered),
                json!(t.missing),
                json!(t.in_grace),
                Value::Null,
                Value::Null,
            ]);
            if !t.missing_samples.is_empty() {
                samples.push(format!(
                    "missing in {}/{}: {}",
                    group.group,
                    t.topic,
                    ids(&t.missing_samples)
                ));
            }
        }
        rows.push(vec![
            json!(group.group),
            json!("(all)"),
            json!(group.sent()),
            json!(group.topics.iter().map(|t| t.applied).sum::<u64>()),
            json!(group.topics.iter().map(|t| t.dead_lettered).sum::<u64>()),
            json!(group.missing()),
            json!(group.topics.iter().map(|t| t.in_grace).sum::<u64>()),
            json!(group.unexpected),
            json!(percent(group.gap())),
        ]);
        if !group.unexpected_samples.is_empty() {
            samples.push(format!(
                "unexpected in {}: {}",
                group.group,
                ids(&group.unexpected_samples)
            ));
        }
    }
    let mut out = rows.render(false);
    for line in samples {
        out.push('\n');
        out.push_str(&line);
    }
    out
}

fn group_json(group: &GroupAudit) -> Value {
    let topics: Vec<Value> = group
        .topics
        .iter()
        .map(|t| {
            json!({
                "topic": t.topic,
                "sent": t.sent,
                "applied": t.applied,
                "dead_lettered": t.dead_lettered,
                "missing": t.missing,
                "in_grace": t.in_grace,
                "missing_samples": t.missing_samples.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })
        })
        .collect();
    let gap = group.gap();
    json!({
        "group": group.group,
        "sent": group.sent(),
        "missing": group.missing(),
        "unexpected": group.unexpected,
        "unexpected_samples": group.unexpected_samples.iter().map(ToString::to_string).collect::<Vec<_>>(),
        // JSON has no infinity: an unbounded gap (nothing sent, something unexpected) is null.
        "gap": gap.is_finite().then_some(gap),
        "topics": topics,
    })
}

fn ids(samples: &[waybill_core::MessageId]) -> String {
    samples
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

fn percent(ratio: f64) -> String {
    if ratio.is_finite() {
        format!("{:.3} %", ratio * 100.0)
    } else {
        "unbounded".into()
    }
}

/// An RFC 3339 time, or a duration before `now` (`90m`, `2h`, `7d`).
fn instant(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        return Ok(t);
    }
    let ago: Duration = humantime::parse_duration(text).map_err(|_| {
        format!("{text:?} is neither an RFC 3339 time (2026-12-04T10:00:00Z) nor a time ago (2h)")
    })?;
    now.checked_sub(ago)
        .ok_or_else(|| format!("{text:?} reaches before the clock's start"))
}

/// A fraction (`0.001`) or a percentage (`0.1%`), from 0 to 1.
fn fraction(text: &str) -> Result<f64, String> {
    let trimmed = text.trim();
    let (number, scale) = match trimmed.strip_suffix('%') {
        Some(p) => (p.trim(), 100.0),
        None => (trimmed, 1.0),
    };
    let value = number
        .parse::<f64>()
        .map(|v| v / scale)
        .map_err(|_| format!("--max-gap {text:?} is not a number or a percentage"))?;
    if !(0.0..=1.0).contains(&value) {
        return Err(format!("--max-gap {text:?} is not between 0 and 100 %"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_read_as_fractions_or_percentages() {
        assert_eq!(fraction("0.1%"), Ok(0.001));
        assert_eq!(fraction("0.001"), Ok(0.001));
        assert_eq!(fraction(" 5 % "), Ok(0.05));
        assert!(fraction("150%").is_err());
        assert!(fraction("lots").is_err());
    }

    #[test]
    fn times_read_as_rfc3339_or_ago() {
        let now = humantime::parse_rfc3339("2026-12-04T12:00:00Z").unwrap();
        assert_eq!(
            instant("2h", now),
            Ok(humantime::parse_rfc3339("2026-12-04T10:00:00Z").unwrap())
        );
        assert_eq!(
            instant("2026-12-04T11:30:00Z", now),
            Ok(humantime::parse_rfc3339("2026-12-04T11:30:00Z").unwrap())
        );
        assert!(instant("yesterday", now).is_err());
    }
}
