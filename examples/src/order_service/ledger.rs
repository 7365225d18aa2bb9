//! The ledger printed at the end of a run, and whether it balances.

use waybill_core::CountersSnapshot;

/// What happened in one run.
#[derive(Debug, Default)]
pub struct RunLedger {
    /// Broker description.
    pub broker: String,
    /// Orders placed.
    pub placed: u64,
    /// Orders malformed on purpose.
    pub malformed: u64,
    /// Publishes confirmed.
    pub confirmed: u64,
    /// Publishes repeated with the same id (lost confirms, or simulated ones).
    pub republished: u64,
    /// Orders applied to the books.
    pub applied: u64,
    /// Orders applied more than once.
    pub applied_twice: u64,
    /// Distinct orders in the dead letter.
    pub dead_lettered: u64,
    /// The consumer's counters.
    pub consumer: CountersSnapshot,
}

impl RunLedger {
    /// Every order exactly once: applied or dead-lettered, never both, never twice.
    pub fn balances(&self) -> bool {
        self.applied + self.dead_lettered == self.placed
            && self.dead_lettered == self.malformed
            && self.applied_twice == 0
            && self.consumer.handled == self.applied
    }

    /// Prints the ledger.
    pub fn print(&self) {
        println!("order-service ledger ({})", self.broker);
        let rows = [
            ("orders placed", self.placed),
            ("publishes confirmed", self.confirmed),
            ("republished with the same id", self.republished),
            ("deliveries received", self.consumer.received),
            ("orders applied (effects)", self.applied),
            ("duplicates skipped", self.consumer.duplicates_skipped),
            ("dead-lettered (malformed)", self.dead_lettered),
            ("acks refused, redelivered", self.consumer.settle_errors),
        ];
        for (name, value) in rows {
            println!("  {name:<30} {value:>8}");
        }
        if self.balances() {
            println!("  balance: applied + dead-lettered = placed, every order exactly once: OK");
        } else {
            println!("  balance: MISMATCH");
        }
    }
}
