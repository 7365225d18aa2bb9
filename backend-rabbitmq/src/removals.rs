//! Acknowledging the dead letters a replay removed in as few frames as the queue allows.

use std::collections::BTreeSet;

use lapin::options::BasicAckOptions;
use lapin::Channel;

/// The deliveries a command removed from the queue it reads on one channel, by their places
/// in what it read and by their delivery tags. Each run of removed deliveries that starts
/// right after the last acknowledged one goes in one `basic.ack` with `multiple` (every
/// delivery up to its tag); a removed delivery behind a kept one waits for
/// [`Removals::finish`], which acknowledges it alone. A delivery is only ever acknowledged
/// after it was recorded here, so a kept one is never acknowledged.
pub(crate) struct Removals {
    channel: Channel,
    removed: Vec<bool>,
    pending: BTreeSet<u64>,
    acknowledged_up_to: u64,
}

impl Removals {
    /// Removals among the `read` deliveries of `channel`, whose delivery tags start at 1 (a
    /// channel that read nothing before).
    pub(crate) fn new(channel: Channel, read: usize) -> Self {
        Self {
            channel,
            removed: vec![false; read],
            pending: BTreeSet::new(),
            acknowledged_up_to: 0,
        }
    }

    /// How many of the deliveries read are not removed.
    pub(crate) fn kept(&self) -> usize {
        self.removed.iter().filter(|removed| !**removed).count()
    }

    /// Records the deliveries `(place, tag)` as removed and acknowledges the run they
    /// complete.
    ///
    /// # Errors
    /// The channel's error when the acknowledgement cannot be sent.
    pub(crate) async fn removed(
        &mut self,
        deliveries: impl IntoIterator<Item = (usize, u64)>,
    ) -> Result<(), lapin::Error> {
        for (place, tag) in deliveries {
            self.removed[place] = true;
            self.pending.insert(tag);
        }
        let before = self.acknowledged_up_to;
        while self.pending.remove(&(self.acknowledged_up_to + 1)) {
            self.acknowledged_up_to += 1;
        }
        if self.acknowledged_up_to > before {
            let multiple = BasicAckOptions { multiple: true };
            self.channel
                .basic_ack(self.acknowledged_up_to, multiple)
                .await?;
        }
        Ok(())
    }

    /// Acknowledges, one at a time, the removed deliveries that a kept one held back.
    ///
    /// # Errors
    /// The channel's error when an acknowledgement cannot be sent.
    pub(crate) async fn finish(&mut self) -> Result<(), lapin::Error> {
        for tag in std::mem::take(&mut self.pending) {
            self.channel
                .basic_ack(tag, BasicAckOptions::default())
                .await?;
        }
        Ok(())
    }
}
