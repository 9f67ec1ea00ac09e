//! A proposer restarted on an empty store (a lost disk, a move, `--init`)
//! must not reuse a ballot it used before: a ballot that carries two
//! different values for one slot lets a later leader pick the one that was
//! not chosen. Real acceptor and proposer cores, messages delivered by hand.
//!
//! The scenario: proposer 1 leads in round 1 and its Accept of `old` for
//! slot 0 reaches acceptor 1 only. Its disk is lost; it restarts empty,
//! leads again through acceptors 2 and 3 and gets `new` chosen in slot 0.
//! Then proposer 2 is elected through acceptors 1 and 2, acceptor 1's
//! promise first. With round discovery the restarted proposer led in
//! round 2, so `new` carries the higher ballot and proposer 2 keeps it.
//! The control answers the round queries with a zero ballot, as if the
//! acceptors had promised nothing: the restarted proposer takes round 1
//! again, both values carry ballot 1.1, and proposer 2 re-proposes `old`
//! over the chosen `new`.

use std::collections::{BTreeMap, VecDeque};
use synod_core::{
    Acceptor, AcceptorState, Ballot, Command, CommandId, Message, Output, Proposer, ProposerConfig,
    ProposerState, ProposerWrite, Role, Value,
};

const NOW: u64 = 10_000;

fn config(id: u32) -> ProposerConfig {
    ProposerConfig::new(id, vec![1, 2], vec![1, 2, 3], vec![1])
}

fn command(client: u64) -> Command {
    Command {
        id: CommandId { client, seq: 1 },
        payload: vec![client as u8],
    }
}

/// Three acceptors and a network under the test's control.
struct Cluster {
    acceptors: BTreeMap<u32, Acceptor>,
    /// Acceptors answer round queries with a zero ballot (the control).
    forget_rounds: bool,
}

impl Cluster {
    fn new(forget_rounds: bool) -> Self {
        let acceptors = (1..=3)
            .map(|id| (id, Acceptor::new(id, AcceptorState::default())))
            .collect();
        Self {
            acceptors,
            forget_rounds,
        }
    }

    /// Deliver `out` from proposer `p` to the acceptors in `reach` (the
    /// rest are lost), hand their answers back to `p`, and go on until
    /// nothing is in flight. Returns what `p` sent to learners.
    fn exchange(
        &mut self,
        p: &mut Proposer,
        out: Output<ProposerWrite>,
        reach: &[u32],
    ) -> Vec<Message> {
        let mut to_learners = Vec::new();
        let mut queue: VecDeque<_> = out.send.into_iter().collect();
        while let Some(outgoing) = queue.pop_front() {
            let to = outgoing.to;
            if to.role == Role::Learner {
                to_learners.push(outgoing.message);
                continue;
            }
            if to.role != Role::Acceptor || !reach.contains(&to.index) {
                continue;
            }
            let acceptor = self.acceptors.get_mut(&to.index).expect("acceptor");
            for answer in acceptor.handle(p.id(), outgoing.message).send {
                let message = match answer.message {
                    Message::RoundReport { .. } if self.forget_rounds => Message::RoundReport {
                        promised: Ballot::ZERO,
                    },
                    message => message,
                };
                queue.extend(p.handle(NOW, to, message).send);
            }
        }
        to_learners
    }

    /// Proposer `id` starts on an empty store and is elected through the
    /// acceptors in `reach`; also returns what it sent to learners (the
    /// values it re-proposed and got chosen on the way).
    fn elect(&mut self, id: u32, reach: &[u32]) -> (Proposer, Vec<Message>) {
        let mut p = Proposer::new(config(id), ProposerState::default(), 0);
        let started = p.start(0);
        self.exchange(&mut p, started, reach);
        let campaign = p.tick(NOW);
        let decided = self.exchange(&mut p, campaign, reach);
        assert!(p.leading_ballot().is_some(), "proposer {id} not elected");
        (p, decided)
    }
}

/// The value chosen in slot 0 by the restarted leader, and the value
/// proposer 2 decides there afterwards (the scenario above).
fn decided_after_a_wiped_leader(forget_rounds: bool) -> (Value, Value) {
    let mut cluster = Cluster::new(forget_rounds);
    let new = Value::batch(vec![command(2)]);

    let (mut first, _) = cluster.elect(1, &[1, 2, 3]);
    let submitted = first.submit(NOW, vec![command(1)]).expect("queued");
    cluster.exchange(&mut first, submitted, &[1]);
    drop(first); // crashed; its disk is lost

    let (mut restarted, _) = cluster.elect(1, &[2, 3]);
    let submitted = restarted.submit(NOW, vec![command(2)]).expect("queued");
    let decided = cluster.exchange(&mut restarted, submitted, &[2, 3]);
    let chosen = slot_zero(&decided).expect("the restarted leader decides slot 0");
    assert_eq!(chosen, new);
    drop(restarted);

    let (_second, decided) = cluster.elect(2, &[1, 2]);
    let later = slot_zero(&decided).expect("proposer 2 decides slot 0 again");
    (chosen, later)
}

fn slot_zero(messages: &[Message]) -> Option<Value> {
    messages.iter().find_map(|m| match m {
        Message::Decided { slot: 0, value } => Some(value.clone()),
        _ => None,
    })
}

#[test]
fn a_leader_restarted_on_an_empty_store_leads_above_its_old_rounds() {
    let (chosen, later) = decided_after_a_wiped_leader(false);
    assert_eq!(later, chosen, "slot 0 keeps its chosen value");
}

#[test]
fn negative_control_without_round_discovery_a_wiped_leader_breaks_agreement() {
    let (chosen, later) = decided_after_a_wiped_leader(true);
    assert_ne!(
        later, chosen,
        "a reused ballot must let a later leader decide another value"
    );
    assert_eq!(later, Value::batch(vec![command(1)]));
}
