//! Persist, then release: what every driver of a role does with the
//! role's [`Output`]. The actix actors (synod-roles) and the simulator
//! both run a role through this one piece of code, so the seeds exercise
//! the ordering the actors rely on.
//!
//! ```text
//! Output { persist, send, deliver } ──run──▶ Step { submit: (ticket, writes), release: [] }
//!                                                     │ the driver makes the writes durable
//! durable(ticket) ◀───────────────────────────────────┘──▶ effects released in emission order
//! ```
//!
//! Effects emitted with writes wait for them; effects emitted without
//! writes wait behind the latest pending write (they may depend on state it
//! changed); nothing overtakes anything emitted before it. After a failed
//! write nothing held is ever released.

use crate::outbox::Outbox;
use crate::store::Write;
use synod_core::{Delivery, Outgoing, Output};

/// One thing a role asked for that may happen only once its writes are
/// durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// A message to send.
    Send(Outgoing),
    /// A value to hand to the state machine.
    Deliver(Delivery),
}

/// What the driver does with one output.
#[derive(Debug, Default)]
pub struct Step {
    /// Writes to make durable, then to report with [`Pipeline::durable`]
    /// under this ticket.
    pub submit: Option<(u64, Vec<Write>)>,
    /// Effects that may happen now.
    pub release: Vec<Effect>,
}

/// A role's effects, held until the writes they depend on are durable.
#[derive(Debug, Default)]
pub struct Pipeline {
    outbox: Outbox<Effect>,
}

impl Pipeline {
    /// Nothing held.
    pub fn new() -> Self {
        Self::default()
    }

    /// Take one handler's output.
    ///
    /// Deliveries of chosen values ([`Delivery::is_chosen`]) are released
    /// at once, in order, ahead of everything held: a chosen value is
    /// already on the disks of a phase-2 quorum of acceptors, so applying
    /// it need not wait for this learner's own copy (lost in a crash, the
    /// copy is learned again, and the same value re-applied to the state
    /// machine rebuilt at restart).
    pub fn run<W: Into<Write>>(&mut self, out: Output<W>) -> Step {
        let (chosen, held): (Vec<Delivery>, Vec<Delivery>) =
            out.deliver.into_iter().partition(Delivery::is_chosen);
        let mut release: Vec<Effect> = chosen.into_iter().map(Effect::Deliver).collect();
        let effects: Vec<Effect> = out
            .send
            .into_iter()
            .map(Effect::Send)
            .chain(held.into_iter().map(Effect::Deliver))
            .collect();
        if out.persist.is_empty() {
            release.extend(self.outbox.without_write(effects));
            return Step {
                submit: None,
                release,
            };
        }
        let ticket = self.outbox.after_write(effects);
        let writes = out.persist.into_iter().map(Into::into).collect();
        Step {
            submit: Some((ticket, writes)),
            release,
        }
    }

    /// The writes of `ticket` (and every earlier one) are durable: the
    /// effects that waited for them, in emission order.
    pub fn durable(&mut self, ticket: u64) -> Vec<Effect> {
        self.outbox.durable(ticket)
    }

    /// A write failed: drop everything held (none of it may happen) and
    /// say how much that was.
    pub fn failed(&mut self) -> usize {
        self.outbox.discard()
    }

    /// Writes submitted and not yet reported durable.
    pub fn pending_writes(&self) -> usize {
        self.outbox.pending_writes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_core::{AcceptorWrite, Ballot, Message, RoleId};

    fn output(persist: bool, to: u32) -> Output<AcceptorWrite> {
        let mut out = Output::new();
        if persist {
            out.persist.push(AcceptorWrite::Promise(Ballot::new(1, 1)));
        }
        out.send(
            RoleId::proposer(to),
            Message::Prepare {
                ballot: Ballot::new(1, 1),
                from_slot: 0,
            },
        );
        out
    }

    fn targets(effects: &[Effect]) -> Vec<u32> {
        effects
            .iter()
            .map(|e| match e {
                Effect::Send(o) => o.to.index,
                Effect::Deliver(_) => 0,
            })
            .collect()
    }

    #[test]
    fn effects_wait_for_their_writes_in_emission_order() {
        let mut pipeline = Pipeline::new();
        assert_eq!(targets(&pipeline.run(output(false, 1)).release), [1]);
        let step = pipeline.run(output(true, 2));
        let (ticket, writes) = step.submit.expect("a write to submit");
        assert_eq!(writes.len(), 1);
        assert!(step.release.is_empty(), "held until durable");
        let behind = pipeline.run(output(false, 3));
        assert!(behind.release.is_empty(), "waits behind the pending write");
        assert_eq!(targets(&pipeline.durable(ticket)), [2, 3]);
        assert_eq!(pipeline.pending_writes(), 0);
    }

    #[test]
    fn chosen_values_are_applied_without_waiting_for_the_learners_copy() {
        let mut pipeline = Pipeline::new();
        let mut out: Output<synod_core::LearnerWrite> = Output::new();
        out.persist.push(synod_core::LearnerWrite::Applied(1));
        let slot = Delivery::Slot {
            slot: 0,
            commands: Vec::new(),
            opened: Vec::new(),
            expired: Vec::new(),
            clock: None,
        };
        let chunk = Delivery::ServeSnapshot {
            to: RoleId::learner(2),
            upto: 1,
            offset: 0,
            max_bytes: 1,
        };
        out.deliver = vec![slot.clone(), chunk.clone()];
        out.send(
            RoleId::proposer(1),
            Message::CatchUp {
                from_slot: 1,
                to_slot: 2,
                escalate: false,
            },
        );
        let step = pipeline.run(out);
        assert_eq!(step.release, [Effect::Deliver(slot)], "applied at once");
        let (ticket, _) = step.submit.expect("the learner's own copy is written");
        let held = pipeline.durable(ticket);
        assert!(matches!(held[0], Effect::Send(_)), "messages still wait");
        assert_eq!(held[1], Effect::Deliver(chunk), "and so does snapshot work");
    }

    #[test]
    fn a_failed_write_releases_nothing() {
        let mut pipeline = Pipeline::new();
        let (ticket, _) = pipeline.run(output(true, 1)).submit.expect("a write");
        pipeline.run(output(false, 2));
        assert_eq!(pipeline.failed(), 2);
        assert!(pipeline.durable(ticket).is_empty());
    }
}
