//! The end every `waybill dlq` suite shares, whatever the broker: a replay killed with SIGKILL
//! half way, run again to the end, every message applied once in its key's order, and the
//! foreign dead letter (no record) shown and purged only with `--all`.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use waybill_core::RunningProcessor;

use super::dlq_rabbitmq::{
    assert_each_key_applied_once_in_order, output, text, wait_until, Applied,
};

/// One suite's commands and figures.
pub(crate) struct ReplayRun<'a> {
    /// `waybill dlq ARGS` with the suite's broker, topic and group.
    pub dlq: &'a dyn Fn(&[&str]) -> Command,
    /// The letters `waybill dlq list --json ARGS` prints.
    pub listed: &'a dyn Fn(&[&str]) -> Vec<Value>,
    /// The `--rate` of the replay that is killed.
    pub rate: &'a str,
    /// The killed replay is killed once more than this many messages were applied.
    pub kill_after: usize,
    /// Messages applied before this run (a letter replayed alone earlier).
    pub applied_before: usize,
    /// The letters with a record the two replays move: keys times messages per key.
    pub keyed: usize,
    /// Messages per key.
    pub per_key: usize,
    /// The key of a letter replayed alone earlier, left out of the order check.
    pub solo_key: Option<&'a str>,
}

impl ReplayRun<'_> {
    /// Kills a paced replay half way, checks it left part of the letters, replays the rest
    /// with `--all` (the foreign letter is selected and skipped), then stops `fixed` and
    /// checks every message was applied once, in its key's order.
    pub(crate) async fn killed_then_finished(&self, applied: &Applied, fixed: RunningProcessor) {
        let mut killed = (self.dlq)(&["replay", "--rate", self.rate])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until("the replay under way", Duration::from_secs(30), || {
            applied.lock().unwrap().len() > self.applied_before + self.kill_after
        })
        .await;
        assert!(
            killed.try_wait().unwrap().is_none(),
            "the replay is still running when it is killed"
        );
        killed.kill().unwrap();
        killed.wait().unwrap();
        // A broker that gives back what the killed connection held does so at once, but not
        // before its close is seen.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let left = (self.listed)(&[]).len();
        assert!(
            (1..self.keyed).contains(&left),
            "the kill happened half way: {left} dead letters left"
        );

        // ... then run again to the end (--all selects the foreign dead letter too, which a
        // replay leaves: its origin is unknown).
        let rerun = output(&mut (self.dlq)(&["replay", "--all", "--json"]));
        assert!(rerun.status.success(), "{}", text(&rerun));
        let report: Value = serde_json::from_slice(&rerun.stdout).expect("JSON");
        assert_eq!(report["replayed"], left as u64, "{report}");
        assert_eq!(report["skipped_without_record"], 1, "{report}");
        let all = self.applied_before + self.keyed;
        wait_until(
            "every replayed message applied",
            Duration::from_secs(60),
            || applied.lock().unwrap().len() >= all,
        )
        .await;
        // Time for a duplicate to show.
        tokio::time::sleep(Duration::from_secs(2)).await;
        fixed.shutdown().await.unwrap();
        let applied = applied.lock().unwrap().clone();
        assert_eq!(applied.len(), all, "each applied once");
        let keyed: Vec<(String, usize)> = applied
            .into_iter()
            .filter(|(key, _)| Some(key.as_str()) != self.solo_key)
            .collect();
        assert_each_key_applied_once_in_order(&keyed, self.per_key);
    }

    /// The foreign dead letter, the last one left: `show` prints its `payload` and that it
    /// has no record; a purge with `--all` removes it and nothing is left to list.
    pub(crate) fn foreign_letter_purged_with_all(&self, payload: &str) {
        let foreign = (self.listed)(&["--all"]);
        assert_eq!(foreign.len(), 1, "{foreign:?}");
        assert_eq!(foreign[0]["error_class"], "no record", "{foreign:?}");
        let foreign_id = foreign[0]["message_id"].as_str().unwrap();
        let shown = output(&mut (self.dlq)(&["show", "--id", foreign_id, "--json"]));
        assert!(shown.status.success(), "{}", text(&shown));
        let detail: Value = serde_json::from_slice(&shown.stdout).expect("JSON");
        assert_eq!(detail["payload"], payload, "{detail}");
        assert!(detail["record"]["missing"].is_string(), "{detail}");
        let purged = output(&mut (self.dlq)(&["purge", "--all"]));
        assert!(purged.status.success(), "{}", text(&purged));
        assert!(text(&purged).contains("purged 1 of 1"), "{}", text(&purged));
        assert!((self.listed)(&["--all"]).is_empty());
    }
}
