//! The ledger printed at the end of a run, and whether it balances.

use waybill_core::CountersSnapshot;
use waybill_outbox::RelayStats;

/// What happened in one run.
#[derive(Debug, Default)]
pub struct RunLedger {
    /// Broker and database description.
    pub setup: String,
    /// Orders placed (rows in the orders table).
    pub placed: u64,
    /// Orders malformed on purpose.
    pub malformed: u64,
    /// Outbox rows written with the orders.
    pub enqueued: u64,
    /// Relay crashes simulated (the relay task aborted mid-batch and restarted).
    pub relay_crashes: u64,
    /// What the relays did, summed over restarts. A crash right after a delete loses that
    /// batch's count (the rows are gone and were published), so this is informational.
    pub relay: RelayStats,
    /// Rows left in the outbox at the end (must be zero).
    pub outbox_left: u64,
    /// Orders applied to the books.
    pub applied: u64,
    /// Orders applied more than once (must be zero).
    pub applied_twice: u64,
    /// Distinct orders in the dead letter.
    pub dead_lettered: u64,
    /// The consumer's counters.
    pub consumer: CountersSnapshot,
    /// The newest publish error recorded on a row left in the outbox, shown when the ledger
    /// does not balance.
    pub last_publish_error: Option<String>,
}

impl RunLedger {
    /// Every order exactly once: relayed, then applied or dead-lettered, never both, never
    /// twice.
    pub fn balances(&self) -> bool {
        self.enqueued == self.placed
            && self.outbox_left == 0
            && self.applied + self.dead_lettered == self.placed
            && self.dead_lettered == self.malformed
            && self.applied_twice == 0
            && self.consumer.handled == self.applied
    }

    /// Prints the ledger.
    pub fn print(&self) {
        println!("order-service ledger ({})", self.setup);
        let rows = [
            ("orders placed", self.placed),
            ("outbox rows enqueued", self.enqueued),
            ("relay crashes (simulated)", self.relay_crashes),
            ("published with a confirm", self.relay.published),
            ("publish attempts failed", self.relay.failed),
            ("left in the outbox", self.outbox_left),
            ("deliveries received", self.consumer.received),
            ("orders applied (effects)", self.applied),
            ("applied twice", self.applied_twice),
            ("duplicates skipped", self.consumer.duplicates_skipped),
            ("dead-lettered (malformed)", self.dead_lettered),
        ];
        for (name, value) in rows {
            println!("  {name:<30} {value:>8}");
        }
        if self.balances() {
            println!(
                "  balance: enqueued = placed, outbox empty, applied + dead-lettered = placed, \
                 nothing applied twice: OK"
            );
        } else {
            println!("  balance: MISMATCH");
            if let Some(error) = &self.last_publish_error {
                println!("  last publish error on a row left in the outbox: {error}");
            }
        }
    }
}
