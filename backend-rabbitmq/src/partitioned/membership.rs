//! Who belongs to a partitioned group, and which partitions each member consumes.
//!
//! A member holds a *slot*: an exclusive, auto-deleted queue `<topic>.<group>.member.<n>`
//! declared on its connection. RabbitMQ lets one connection at a time hold an exclusive queue
//! and deletes it when that connection closes or dies, so a slot is a lease the broker itself
//! ends when its member goes away: no clocks, no heartbeats of our own. Each member takes the
//! lowest free slot and reads which slots are held; all members therefore compute the same
//! assignment ([`assigned`]) once they have read the same slots.
//!
//! The assignment only spreads the work. Exclusivity comes from the partition queues'
//! single active consumer: should two members both consume a partition for a moment (their
//! readings differ), the broker delivers to one of them only.

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection};

use crate::error_class::reply_code;
use crate::topology_names::QueueNames;

/// AMQP `NOT_FOUND`: the slot queue does not exist, nobody holds the slot.
const NOT_FOUND: u16 = 404;
/// AMQP `RESOURCE_LOCKED`: another connection holds the slot's exclusive queue.
const RESOURCE_LOCKED: u16 = 405;

/// The partitions that the member in slot `me` consumes when the slots `members` are held: the
/// member of rank `r` (its place among the held slots, in order) takes the partitions `p` with
/// `p % members.len() == r`, so counts differ by one at most. A member whose slot is not among
/// `members` takes none.
pub(crate) fn assigned(partitions: u16, members: &[u16], me: u16) -> Vec<u16> {
    let mut held = members.to_vec();
    held.sort_unstable();
    held.dedup();
    let Some(rank) = held.iter().position(|slot| *slot == me) else {
        return Vec::new();
    };
    (0..partitions)
        .filter(|p| usize::from(*p) % held.len() == rank)
        .collect()
}

/// Probes the slots of a group on one connection, reopening its channel after each refusal
/// (a refused declare closes the channel).
pub(crate) struct SlotProbe<'a> {
    connection: &'a Connection,
    names: &'a QueueNames,
    channel: Option<Channel>,
}

impl<'a> SlotProbe<'a> {
    pub fn new(connection: &'a Connection, names: &'a QueueNames) -> Self {
        Self {
            connection,
            names,
            channel: None,
        }
    }

    async fn channel(&mut self) -> Result<&Channel, lapin::Error> {
        if !self
            .channel
            .as_ref()
            .is_some_and(|c| c.status().connected())
        {
            self.channel = Some(self.connection.create_channel().await?);
        }
        Ok(self.channel.as_ref().expect("opened above"))
    }

    /// Declares slot `slot`'s queue with `options` (a refusal closes the channel, which the
    /// next call reopens).
    async fn declare(
        &mut self,
        slot: u16,
        options: QueueDeclareOptions,
    ) -> Result<(), lapin::Error> {
        let name = self.names.member_slot(slot);
        self.channel()
            .await?
            .queue_declare(name.as_str().into(), options, FieldTable::default())
            .await
            .map(|_| ())
    }

    /// Takes the lowest free slot below `slots`; `None` when all are held.
    ///
    /// # Errors
    /// The broker's error for anything but a slot held by another member.
    pub async fn claim(&mut self, slots: u16) -> Result<Option<u16>, lapin::Error> {
        for slot in 0..slots {
            let exclusive = QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            };
            let declared = self.declare(slot, exclusive).await;
            match declared {
                Ok(_) => return Ok(Some(slot)),
                Err(e) if reply_code(&e) == Some(RESOURCE_LOCKED) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// The slots below `slots` that are held (by any member, this one included).
    ///
    /// # Errors
    /// The broker's error for anything but a free or a held slot.
    pub async fn held(&mut self, slots: u16) -> Result<Vec<u16>, lapin::Error> {
        let mut held = Vec::new();
        for slot in 0..slots {
            let passive = QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            };
            let declared = self.declare(slot, passive).await;
            match declared {
                Ok(_) => held.push(slot),
                Err(e) if reply_code(&e) == Some(RESOURCE_LOCKED) => held.push(slot),
                Err(e) if reply_code(&e) == Some(NOT_FOUND) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(held)
    }
}

#[cfg(test)]
mod tests {
    use super::assigned;

    #[test]
    fn partitions_are_spread_by_rank_and_cover_every_partition_once() {
        let members = [0, 3, 5];
        let shares: Vec<Vec<u16>> = members.iter().map(|m| assigned(8, &members, *m)).collect();
        assert_eq!(shares, vec![vec![0, 3, 6], vec![1, 4, 7], vec![2, 5]]);
        let mut all: Vec<u16> = shares.concat();
        all.sort_unstable();
        assert_eq!(all, (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn a_lone_member_takes_all_and_an_unlisted_one_none() {
        assert_eq!(assigned(4, &[2], 2), vec![0, 1, 2, 3]);
        assert_eq!(assigned(4, &[2], 1), Vec::<u16>::new());
        assert_eq!(assigned(4, &[], 0), Vec::<u16>::new());
    }

    #[test]
    fn more_members_than_partitions_leave_the_last_ones_idle() {
        let members = [0, 1, 2];
        assert_eq!(assigned(2, &members, 0), vec![0]);
        assert_eq!(assigned(2, &members, 1), vec![1]);
        assert_eq!(assigned(2, &members, 2), Vec::<u16>::new());
    }
}
