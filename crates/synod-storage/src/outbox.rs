//! Holding replies until the writes they depend on are durable.
//!
//! A role actor hands each handler's writes to the group-commit writer and
//! its messages to an `Outbox`. Messages produced with a write wait for
//! that write's ticket; messages produced without one wait behind the
//! latest pending write (they may depend on state it changed); nothing
//! overtakes anything emitted before it.

use std::collections::VecDeque;

/// Replies in emission order, each group waiting for a write ticket.
#[derive(Debug)]
pub struct Outbox<T> {
    next_ticket: u64,
    held: VecDeque<(u64, Vec<T>)>,
}

impl<T> Default for Outbox<T> {
    fn default() -> Self {
        Self {
            next_ticket: 0,
            held: VecDeque::new(),
        }
    }
}

impl<T> Outbox<T> {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// `items` depend on a write the caller is about to submit; the
    /// returned ticket identifies that write in [`Outbox::durable`].
    pub fn after_write(&mut self, items: Vec<T>) -> u64 {
        self.next_ticket += 1;
        self.held.push_back((self.next_ticket, items));
        self.next_ticket
    }

    /// `items` need no write of their own: they are returned at once when
    /// nothing is pending, else they wait behind the latest pending write.
    pub fn without_write(&mut self, items: Vec<T>) -> Vec<T> {
        match self.held.back_mut() {
            None => items,
            Some((_, waiting)) => {
                waiting.extend(items);
                Vec::new()
            }
        }
    }

    /// Write `ticket` (and so every earlier one) is durable: release what
    /// waited for it, in emission order.
    pub fn durable(&mut self, ticket: u64) -> Vec<T> {
        let mut released = Vec::new();
        while self.held.front().is_some_and(|(t, _)| *t <= ticket) {
            released.extend(self.held.pop_front().expect("front exists").1);
        }
        released
    }

    /// Drop everything held (the writes failed: none of it may be sent).
    pub fn discard(&mut self) -> usize {
        self.held.drain(..).map(|(_, items)| items.len()).sum()
    }

    /// How many writes are still pending.
    pub fn pending_writes(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_wait_for_their_write_and_keep_their_order() {
        let mut outbox = Outbox::new();
        assert_eq!(
            outbox.without_write(vec!["free"]),
            vec!["free"],
            "nothing pending"
        );
        let first = outbox.after_write(vec!["promise"]);
        assert!(
            outbox.without_write(vec!["nack"]).is_empty(),
            "waits behind the pending write"
        );
        let second = outbox.after_write(vec!["accepted"]);
        assert!(outbox.durable(first - 1).is_empty());
        assert_eq!(outbox.durable(first), vec!["promise", "nack"]);
        assert_eq!(outbox.pending_writes(), 1);
        assert_eq!(outbox.durable(second), vec!["accepted"]);
        assert_eq!(outbox.without_write(vec!["later"]), vec!["later"]);
    }

    #[test]
    fn discarding_drops_everything_held() {
        let mut outbox = Outbox::new();
        outbox.after_write(vec![1, 2]);
        outbox.without_write(vec![3]);
        assert_eq!(outbox.discard(), 3);
        assert_eq!(outbox.pending_writes(), 0);
    }
}
