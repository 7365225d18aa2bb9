//! The run as a picture: an SVG timeline of throughput (confirmed and applied per second), lag
//! (confirmed but not yet applied) and the faults as shaded bands, written next to the verdict.
//! A person reads a run faster from a plot than from counters.

use std::collections::HashSet;
use std::fmt::Write;

use crate::ledger::LedgerRows;
use crate::verdict::FaultRecord;

const WIDTH: f64 = 1000.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const RATE_TOP: f64 = 64.0;
const RATE_HEIGHT: f64 = 220.0;
const LAG_TOP: f64 = 324.0;
const LAG_HEIGHT: f64 = 140.0;
const HEIGHT: f64 = 504.0;

/// Per-second series of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Series {
    /// Messages confirmed in each second.
    pub confirmed: Vec<u64>,
    /// Messages applied for the first time in each second.
    pub applied: Vec<u64>,
    /// Confirmed and not yet applied, at the end of each second.
    pub lag: Vec<u64>,
}

impl Series {
    /// Buckets the ledger by second from `start_ms`.
    pub fn of(rows: &LedgerRows, start_ms: i64) -> Self {
        let second = |at_ms: i64| usize::try_from((at_ms - start_ms).max(0) / 1000).unwrap_or(0);
        let confirmed_ids: HashSet<_> = rows
            .sent
            .iter()
            .filter(|s| s.confirmed)
            .map(|s| s.id)
            .collect();
        let mut seen = HashSet::new();
        let first_applied: Vec<(usize, bool)> = rows
            .applied
            .iter()
            .filter(|a| seen.insert(a.id))
            .map(|a| (second(a.at_ms), confirmed_ids.contains(&a.id)))
            .collect();
        let confirmed_at: Vec<usize> = rows
            .sent
            .iter()
            .filter(|s| s.confirmed)
            .map(|s| second(s.at_ms))
            .collect();
        let len = 1 + confirmed_at
            .iter()
            .chain(first_applied.iter().map(|(s, _)| s))
            .copied()
            .max()
            .unwrap_or(0);
        let mut series = Self {
            confirmed: vec![0; len],
            applied: vec![0; len],
            lag: vec![0; len],
        };
        let mut applied_confirmed = vec![0u64; len];
        for s in confirmed_at {
            series.confirmed[s] += 1;
        }
        for (s, was_confirmed) in first_applied {
            series.applied[s] += 1;
            applied_confirmed[s] += u64::from(was_confirmed);
        }
        let (mut total_confirmed, mut total_applied) = (0u64, 0u64);
        for (s, applied) in applied_confirmed.iter().enumerate() {
            total_confirmed += series.confirmed[s];
            total_applied += applied;
            series.lag[s] = total_confirmed.saturating_sub(total_applied);
        }
        series
    }
}

/// The SVG picture of a run: `title` on top, the series, the faults.
pub fn svg(title: &str, series: &Series, faults: &[FaultRecord]) -> String {
    let seconds = (series.confirmed.len() as f64)
        .max(faults.iter().map(|f| f.ended_s).fold(0.0, f64::max))
        .max(1.0);
    let x = |s: f64| LEFT + s / seconds * (WIDTH - LEFT - RIGHT);
    let rate_max = series
        .confirmed
        .iter()
        .chain(&series.applied)
        .copied()
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let lag_max = series.lag.iter().copied().max().unwrap_or(0).max(1) as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="20" font-size="14">{}</text>"#,
        escape(title)
    );
    for (i, fault) in faults.iter().enumerate() {
        let (from, to) = (
            x(fault.started_s),
            x(fault.ended_s.max(fault.started_s + 0.2)),
        );
        let colour = if fault.ok { "#e4572e" } else { "#7a0000" };
        let _ = writeln!(
            out,
            r#"<rect x="{from:.1}" y="{RATE_TOP}" width="{:.1}" height="{:.1}" fill="{colour}" fill-opacity="0.18"><title>{}</title></rect>"#,
            to - from,
            LAG_TOP + LAG_HEIGHT - RATE_TOP,
            escape(&format!("{} ({})", fault.action, fault.detail))
        );
        // Labels take four lines in turn so that neighbours do not overlap.
        let _ = writeln!(
            out,
            r#"<text x="{from:.1}" y="{}" fill="{colour}" font-size="9">{}</text>"#,
            RATE_TOP - 4.0 - 10.0 * (i % 4) as f64,
            escape(&fault.action.to_string())
        );
    }
    panel(&mut out, "messages/s", RATE_TOP, RATE_HEIGHT, rate_max);
    panel(
        &mut out,
        "lag (confirmed, not applied)",
        LAG_TOP,
        LAG_HEIGHT,
        lag_max,
    );
    let line = |values: &[u64], top: f64, height: f64, max: f64| -> String {
        values
            .iter()
            .enumerate()
            .map(|(s, v)| {
                format!(
                    "{:.1},{:.1}",
                    x(s as f64 + 0.5),
                    top + height - *v as f64 / max * height
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    for (values, colour, top, height, max, label) in [
        (
            &series.confirmed,
            "#1f77b4",
            RATE_TOP,
            RATE_HEIGHT,
            rate_max,
            "confirmed",
        ),
        (
            &series.applied,
            "#2ca02c",
            RATE_TOP,
            RATE_HEIGHT,
            rate_max,
            "applied",
        ),
        (&series.lag, "#ff7f0e", LAG_TOP, LAG_HEIGHT, lag_max, "lag"),
    ] {
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"><title>{label}</title></polyline>"#,
            line(values, top, height, max)
        );
    }
    let legend_y = LAG_TOP + LAG_HEIGHT + 30.0;
    for (i, (colour, label)) in [
        ("#1f77b4", "confirmed/s"),
        ("#2ca02c", "applied/s"),
        ("#ff7f0e", "lag"),
        ("#e4572e", "fault"),
    ]
    .iter()
    .enumerate()
    {
        let lx = LEFT + 120.0 * i as f64;
        let _ = writeln!(
            out,
            r#"<rect x="{lx}" y="{}" width="12" height="12" fill="{colour}"/><text x="{}" y="{}">{label}</text>"#,
            legend_y - 10.0,
            lx + 16.0,
            legend_y
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="end">{seconds:.0} s</text>"#,
        WIDTH - RIGHT,
        LAG_TOP + LAG_HEIGHT + 14.0
    );
    out.push_str("</svg>\n");
    out
}

fn panel(out: &mut String, label: &str, top: f64, height: f64, max: f64) {
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{top}" width="{}" height="{height}" fill="none" stroke="#999"/>"##,
        WIDTH - LEFT - RIGHT
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="end">{max:.0}</text><text x="{}" y="{}" text-anchor="end">0</text>"#,
        LEFT - 4.0,
        top + 10.0,
        LEFT - 4.0,
        top + height
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}">{}</text>"#,
        LEFT + 4.0,
        top + 12.0,
        escape(label)
    );
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{AppliedRow, SentRow};
    use crate::schedule::FaultAction;
    use waybill_core::MessageId;

    #[test]
    fn the_series_count_first_applications_and_the_lag_they_leave() {
        let ids: Vec<MessageId> = (0..3).map(|_| MessageId::new()).collect();
        let rows = LedgerRows {
            sent: ids
                .iter()
                .map(|id| SentRow {
                    id: *id,
                    confirmed: true,
                    at_ms: 10_100,
                })
                .collect(),
            applied: [(0, 11_500), (1, 12_100), (1, 12_200), (2, 12_900)]
                .iter()
                .map(|(i, at_ms)| AppliedRow {
                    id: ids[*i],
                    key: "k".into(),
                    seq: 0,
                    consumer: "c".into(),
                    at_ms: *at_ms,
                })
                .collect(),
            dead: Vec::new(),
        };
        let series = Series::of(&rows, 10_000);
        assert_eq!(series.confirmed, vec![3, 0, 0]);
        assert_eq!(series.applied, vec![0, 1, 2]);
        assert_eq!(series.lag, vec![3, 2, 0]);
        let fault = FaultRecord {
            action: FaultAction::Kill {
                role: "relay-1".into(),
            },
            started_s: 0.5,
            ended_s: 1.5,
            detail: "pid 7 <killed>".into(),
            ok: true,
        };
        let picture = svg("run & more", &series, &[fault]);
        assert!(picture.starts_with("<svg") && picture.ends_with("</svg>\n"));
        assert!(picture.contains("run &amp; more") && picture.contains("kill relay-1"));
        assert!(picture.contains("pid 7 &lt;killed&gt;"));
        assert_eq!(picture.matches("<polyline").count(), 3);
    }
}
