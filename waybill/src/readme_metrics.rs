//! The README's metric table and `waybill_core::telemetry`'s are the same rows, and name every
//! instrument the code registers, so neither can drift from what is emitted.

use waybill_core::telemetry::names::ALL;

/// The rows of the first metric table (`| name | type | ...`) in `text`, each line trimmed of
/// a leading `//! `.
fn table_rows(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.strip_prefix("//! ").unwrap_or(l))
        .collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("| name | type | unit |"))
        .expect("a metric table");
    lines[start..]
        .iter()
        .take_while(|l| l.starts_with('|'))
        .map(|l| (*l).to_owned())
        .collect()
}

/// The metric name of a table row.
fn name(row: &str) -> &str {
    row.split('|')
        .nth(1)
        .unwrap_or_default()
        .trim()
        .trim_matches('`')
}

#[test]
fn the_readme_metric_table_matches_the_code() {
    let readme = table_rows(include_str!("../../README.md"));
    let code = table_rows(include_str!("../../sdk-core/src/telemetry.rs"));
    assert_eq!(
        readme, code,
        "README.md's metric table differs from telemetry.rs's"
    );
    let listed: Vec<&str> = readme.iter().skip(2).map(|r| name(r)).collect();
    let mut registered: Vec<&str> = ALL.to_vec();
    let mut shown = listed.clone();
    registered.sort_unstable();
    shown.sort_unstable();
    assert_eq!(
        shown, registered,
        "every instrument is documented, and only those"
    );
}
