//! The operations assets in `ops/` name only metrics and labels the code emits, spelled as the
//! Prometheus exporter writes them: the alert rules (and the input series of their unit
//! tests) and the queries of the Grafana dashboard. A misspelled name there is an alert that
//! never fires or a panel that stays empty, and nothing else would notice.
//!
//! `metrics-exporter-prometheus` turns every character outside `[a-zA-Z0-9_:]` of a metric
//! name into `_` (outside `[a-zA-Z0-9_]` for a label key), adds no unit or `_total` suffix,
//! and writes a histogram as its `_bucket`, `_sum` and `_count` series.

use std::collections::BTreeSet;

use serde_json::Value;
use waybill_core::telemetry::{attributes, names};

const ALERTS: &str = include_str!("../../ops/prometheus/waybill-alerts.yml");
const ALERT_TESTS: &str = include_str!("../../ops/prometheus/waybill-alerts.test.yml");
const DASHBOARD: &str = include_str!("../../ops/grafana/waybill-dashboard.json");
const TELEMETRY: &str = include_str!("../../sdk-core/src/telemetry.rs");

/// Prefixes of the names waybill owns: a name with one of them must be one the code emits.
const OURS: [&str; 2] = ["waybill_", "messaging_"];

/// Labels Prometheus itself attaches to every scraped series.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

/// Keywords after which a parenthesised list names labels.
const GROUPING: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

fn ours(name: &str) -> bool {
    OURS.iter().any(|p| name.starts_with(p))
}

/// The exporter's spelling of a metric name.
fn metric_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The exporter's spelling of a label key.
fn label_key(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The `type` column of telemetry.rs's metric table for instrument `name`.
fn instrument_type(name: &str) -> &'static str {
    let cell = format!("| `{name}` |");
    let row = TELEMETRY
        .lines()
        .filter_map(|l| l.strip_prefix("//! "))
        .find(|l| l.starts_with(&cell))
        .unwrap_or_else(|| panic!("telemetry.rs's metric table has no row for {name}"));
    row.split('|').nth(2).unwrap_or_default().trim()
}

/// Every series name the exporter writes for `names::ALL`.
fn exported_metrics() -> BTreeSet<String> {
    let mut exported = BTreeSet::new();
    for name in names::ALL {
        let base = metric_name(name);
        match instrument_type(name) {
            "counter" | "gauge" => {
                exported.insert(base);
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    exported.insert(format!("{base}{suffix}"));
                }
            }
            other => panic!("{name} has type {other:?} in telemetry.rs's table"),
        }
    }
    exported
}

/// Every attribute key of `waybill_core::telemetry::attributes` (read from its source, so a
/// new key needs no change here), as the exporter writes it.
fn exported_labels() -> BTreeSet<String> {
    let module = TELEMETRY
        .split("pub mod attributes {")
        .nth(1)
        .and_then(|rest| rest.split("\n}").next())
        .expect("telemetry.rs has a `pub mod attributes`");
    let keys: BTreeSet<String> = module
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const "))
        .filter_map(|l| l.split('"').nth(1))
        .map(label_key)
        .collect();
    for known in [
        attributes::SYSTEM,
        attributes::DESTINATION,
        attributes::GROUP,
        attributes::OUTCOME,
        attributes::CLAIM_RESULT,
        attributes::RELAY,
        attributes::PARTITION,
    ] {
        assert!(
            keys.contains(&label_key(known)),
            "reading the attributes module of telemetry.rs missed {known}"
        );
    }
    keys
}

/// What an identifier of a query names, by its place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Metric,
    Label,
    Function,
}

/// What a parenthesis opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Paren {
    /// The label list of `by`, `without`, `on`, `ignoring`, `group_left`, `group_right`.
    Grouping,
    /// Grafana's `label_values(metric, label)` / `label_values(label)`: the last argument is a
    /// label.
    LabelValues,
    Other,
}

fn ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// `text` without its string literals (`"…"`, `'…'`, `` `…` ``), which hold label values.
fn without_strings(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if matches!(c, '"' | '\'' | '`') {
            let mut escaped = false;
            for s in chars.by_ref() {
                if escaped {
                    escaped = false;
                } else if s == '\\' && c != '`' {
                    escaped = true;
                } else if s == c {
                    break;
                }
            }
            out.push_str("\"\"");
        } else {
            out.push(c);
        }
    }
    out
}

/// True when `rest` starts (after spaces) with `by (` or `without (`: what precedes it is an
/// aggregation (`sum by (le) (…)`).
fn aggregation_clause(rest: &[char]) -> bool {
    let rest: String = rest.iter().collect();
    ["by", "without"].iter().any(|keyword| {
        rest.trim_start()
            .strip_prefix(keyword)
            .is_some_and(|after| after.trim_start().starts_with('('))
    })
}

/// The identifiers of a PromQL expression (or of a Grafana `label_values(…)` query) with the
/// role their place gives them. Grafana variables (`$destination`, `${x}`,
/// `$__rate_interval`), string literals and numbers and durations are skipped; keywords
/// (`and`, `offset` …) come out as metrics, harmless as none is one of ours.
fn identifiers(expr: &str) -> Vec<(String, Role)> {
    let chars: Vec<char> = without_strings(expr).chars().collect();
    let next_non_space = |from: usize| chars[from..].iter().copied().find(|c| !c.is_whitespace());
    let mut found = Vec::new();
    let mut braces = 0usize;
    let mut parens: Vec<Paren> = Vec::new();
    let mut opening = Paren::Other;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '$' {
            // A Grafana variable: `$name` or `${name}`.
            i += 1;
            if chars.get(i) == Some(&'{') {
                while i < chars.len() && chars[i] != '}' {
                    i += 1;
                }
                i += 1;
            } else {
                while i < chars.len() && ident_char(chars[i]) {
                    i += 1;
                }
            }
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            // A number or a duration (0.99, 1e3, 5m, 1h30m).
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            continue;
        }
        if ident_start(c) {
            let start = i;
            while i < chars.len() && ident_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = next_non_space(i);
            // Inside a matcher, a grouping list, or last in `label_values(…)`: a label.
            let label = braces > 0
                || parens.last() == Some(&Paren::Grouping)
                || (parens.last() == Some(&Paren::LabelValues) && next == Some(')'));
            let role = if label {
                Some(Role::Label)
            } else if GROUPING.contains(&word.as_str()) {
                if next == Some('(') {
                    opening = Paren::Grouping;
                }
                None
            } else if next == Some('(') || aggregation_clause(&chars[i..]) {
                if word == "label_values" {
                    opening = Paren::LabelValues;
                }
                Some(Role::Function)
            } else {
                Some(Role::Metric)
            };
            if let Some(role) = role {
                found.push((word, role));
            }
            continue;
        }
        match c {
            '{' => braces += 1,
            '}' => braces = braces.saturating_sub(1),
            '(' => parens.push(std::mem::replace(&mut opening, Paren::Other)),
            ')' => {
                parens.pop();
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// Checks one query of `source`, adding what is wrong to `problems`; returns the metrics of
/// ours it names.
fn check_query(
    source: &str,
    query: &str,
    metrics: &BTreeSet<String>,
    labels: &BTreeSet<String>,
    problems: &mut Vec<String>,
) -> BTreeSet<String> {
    let found = identifiers(query);
    // Every occurrence of one of our prefixes was seen as (part of) an identifier: the
    // scanner skipped nothing it should have read.
    let stripped = without_strings(query);
    for prefix in OURS {
        let in_text = stripped.matches(prefix).count();
        let in_identifiers: usize = found.iter().map(|(w, _)| w.matches(prefix).count()).sum();
        if in_text != in_identifiers {
            problems.push(format!(
                "{source}: the scanner read {in_identifiers} of the {in_text} `{prefix}…` names in `{query}`"
            ));
        }
    }
    let mut used = BTreeSet::new();
    for (word, role) in found {
        if !ours(&word) {
            continue;
        }
        match role {
            Role::Metric if metrics.contains(&word) => {
                used.insert(word);
            }
            Role::Metric => problems.push(format!(
                "{source}: `{word}` is not a metric waybill exports (in `{query}`)"
            )),
            Role::Label if labels.contains(&word) => {}
            Role::Label => problems.push(format!(
                "{source}: `{word}` is not a label waybill exports (in `{query}`)"
            )),
            Role::Function => problems.push(format!(
                "{source}: `{word}` is used as a function (in `{query}`)"
            )),
        }
    }
    used
}

/// The values of `key:` in a YAML text: inline (plain or quoted) or block scalars (`|`, `>`).
fn yaml_values(text: &str, key: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let prefix = format!("{key}:");
    let mut values = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let indent = line.len() - line.trim_start().len();
        let item = line.trim_start();
        let item = item.strip_prefix("- ").unwrap_or(item);
        let Some(rest) = item.strip_prefix(&prefix) else {
            continue;
        };
        let rest = rest.trim();
        if rest.starts_with('|') || rest.starts_with('>') {
            let block: Vec<&str> = lines[n + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .map(|l| l.trim())
                .collect();
            values.push(block.join("\n"));
        } else if let Some(quoted) = rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
            values.push(quoted.replace("''", "'"));
        } else if let Some(quoted) = rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            values.push(quoted.replace("\\\"", "\"").replace("\\\\", "\\"));
        } else {
            values.push(rest.to_owned());
        }
    }
    values
}

/// The queries of a Grafana dashboard: every panel target's `expr` and every template
/// variable's query, each with where it is.
fn dashboard_queries(value: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(fields) => {
            let title = fields.get("title").and_then(Value::as_str);
            let here = match (title, fields.get("name").and_then(Value::as_str)) {
                (Some(title), _) => format!("{path} > {title:?}"),
                (None, Some(name)) => format!("{path} > variable {name:?}"),
                (None, None) => path.to_owned(),
            };
            for (key, field) in fields {
                match (key.as_str(), field) {
                    ("expr" | "definition" | "query", Value::String(q)) => {
                        out.push((format!("{here} {key}"), q.clone()));
                    }
                    _ => dashboard_queries(field, &here, out),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                dashboard_queries(item, path, out);
            }
        }
        _ => {}
    }
}

/// Base instruments (exported, histograms without suffix) of a set of series names.
fn instruments(series: &BTreeSet<String>) -> BTreeSet<String> {
    series
        .iter()
        .map(|s| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| s.strip_suffix(suffix))
                .filter(|base| names::ALL.iter().any(|n| metric_name(n) == *base))
                .unwrap_or(s)
                .to_owned()
        })
        .collect()
}

#[test]
fn the_identifier_scanner_reads_metrics_labels_and_functions() {
    let found = identifiers(
        r#"histogram_quantile(0.99, sum by (le, a_b) (rate(m_bucket{x=~"$d", y!="v{w}"}[$__rate_interval]))) > on (z) group_left k offset 5m"#,
    );
    let expected = [
        ("histogram_quantile", Role::Function),
        ("sum", Role::Function),
        ("le", Role::Label),
        ("a_b", Role::Label),
        ("rate", Role::Function),
        ("m_bucket", Role::Metric),
        ("x", Role::Label),
        ("y", Role::Label),
        ("z", Role::Label),
        ("k", Role::Metric),
        ("offset", Role::Metric),
    ];
    let found: Vec<(&str, Role)> = found.iter().map(|(w, r)| (w.as_str(), *r)).collect();
    assert_eq!(found, expected);
    let found = identifiers("label_values(m{job=\"j\"}, l)");
    let found: Vec<(&str, Role)> = found.iter().map(|(w, r)| (w.as_str(), *r)).collect();
    assert_eq!(
        found,
        [
            ("label_values", Role::Function),
            ("m", Role::Metric),
            ("job", Role::Label),
            ("l", Role::Label)
        ]
    );
}

#[test]
fn the_alert_rules_name_only_exported_metrics_and_labels() {
    let metrics = exported_metrics();
    let labels = exported_labels();
    let mut problems = Vec::new();
    let exprs = yaml_values(ALERTS, "expr");
    let alerts = yaml_values(ALERTS, "alert");
    assert_eq!(exprs.len(), alerts.len(), "one expr per alert");
    let mut used = BTreeSet::new();
    for (alert, expr) in alerts.iter().zip(&exprs) {
        let source = format!("waybill-alerts.yml {alert}");
        used.extend(check_query(&source, expr, &metrics, &labels, &mut problems));
    }
    // Labels the annotations print must be there to print.
    for part in ALERTS.split("$labels.").skip(1) {
        let label: String = part.chars().take_while(|c| ident_char(*c)).collect();
        if !labels.contains(&label) && !TARGET_LABELS.contains(&label.as_str()) {
            problems.push(format!(
                "waybill-alerts.yml: an annotation prints `$labels.{label}`, not a label of waybill's series"
            ));
        }
    }
    for series in yaml_values(ALERT_TESTS, "series") {
        check_query(
            "waybill-alerts.test.yml input series",
            &series,
            &metrics,
            &labels,
            &mut problems,
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let covered = instruments(&used);
    for needed in [
        names::RELAY_OLDEST_PENDING_AGE,
        names::RELAY_SHARDS_OWNED,
        names::RELAY_DEAD_ROWS,
        names::DEAD_LETTER_DEPTH,
        names::CONSUMER_LAG,
        names::RETRIES,
        names::CONSUMED_MESSAGES,
        names::RELAY_READY,
        names::PROCESSOR_READY,
    ] {
        assert!(
            covered.contains(&metric_name(needed)),
            "no alert reads {needed} (alerts read {covered:?})"
        );
    }
}

#[test]
fn every_alert_has_a_firing_and_a_quiet_unit_test() {
    let alerts = yaml_values(ALERTS, "alert");
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    let mut current: Option<String> = None;
    for line in ALERT_TESTS.lines() {
        let line = line.trim_start();
        let line = line.strip_prefix("- ").unwrap_or(line);
        if let Some(name) = line.strip_prefix("alertname:") {
            let name = name.trim().to_owned();
            assert!(
                alerts.contains(&name),
                "waybill-alerts.test.yml tests {name}, which waybill-alerts.yml does not define"
            );
            current = Some(name);
        } else if let Some(expected) = line.strip_prefix("exp_alerts:") {
            let name = current.take().expect("exp_alerts follows an alertname");
            if expected.trim() == "[]" {
                quiet.insert(name);
            } else {
                fires.insert(name);
            }
        }
    }
    for alert in &alerts {
        assert!(fires.contains(alert), "no unit test where {alert} fires");
        assert!(
            quiet.contains(alert),
            "no unit test where {alert} stays quiet"
        );
    }
}

#[test]
fn the_dashboard_queries_name_only_exported_metrics_and_labels() {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let metrics = exported_metrics();
    let labels = exported_labels();
    let mut queries = Vec::new();
    dashboard_queries(&dashboard, "waybill-dashboard.json", &mut queries);
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for (source, query) in &queries {
        used.extend(check_query(source, query, &metrics, &labels, &mut problems));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let panels = dashboard["panels"].as_array().expect("a panel list");
    let targets = panels
        .iter()
        .filter_map(|p| p["targets"].as_array())
        .flatten()
        .count();
    assert!(targets >= 15, "the dashboard has {targets} queries");
    // Its panels read the data source the user picks.
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "panel {} has a fixed data source",
            panel["title"]
        );
    }
    // The histograms are read through their buckets.
    for histogram in [names::OPERATION_DURATION, names::PROCESS_DURATION] {
        let bucket = format!("{}_bucket", metric_name(histogram));
        assert!(used.contains(&bucket), "no panel reads {bucket}");
    }
    assert!(
        instruments(&used).len() >= 15,
        "the dashboard shows only {:?}",
        instruments(&used)
    );
}
