//! A single-decree instance chosen in one epoch stays chosen in the next,
//! even when the next epoch's acceptors are all new: the leader of the new
//! epoch carries every instance's votes into it before its acceptors vote
//! on instances. Real acceptor and proposer cores, messages delivered by
//! hand.
//!
//! The scenario: acceptors 1–3 choose `old` for instance `r`. The leader
//! replaces them with acceptors 4–6 (a stop sign in the log) and moves to
//! epoch 1. Then proposer 2, already in epoch 1, proposes `new` for `r`
//! and must decide `old`. The control blanks the votes the carry reads,
//! and proposer 2 decides `new`: `r` decided twice.

use std::collections::{BTreeMap, VecDeque};
use synod_core::{
    Acceptor, AcceptorState, Message, Output, Proposer, ProposerConfig, ProposerState,
    ProposerWrite, Quorums, Role, RoleId,
};
use synod_core::{Epoch, Membership};

fn config(id: u32) -> ProposerConfig {
    ProposerConfig::new(id, vec![1, 2], vec![1, 2, 3], vec![1])
}

/// Epoch 0 as `config` seeds it.
fn epoch_0() -> Membership {
    Membership::initial(vec![1, 2, 3], Quorums::majority(3), vec![1, 2], vec![1])
}

/// Six acceptors (1–3 in epoch 0) and a network that delivers everything.
struct Cluster {
    acceptors: BTreeMap<u32, Acceptor>,
    now: u64,
    /// The carry reads no votes (the control).
    blind_carry: bool,
}

impl Cluster {
    fn new(blind_carry: bool) -> Self {
        let acceptors = (1..=6)
            .map(|id| (id, Acceptor::new(id, AcceptorState::default())))
            .collect();
        Self {
            acceptors,
            now: 10_000,
            blind_carry,
        }
    }

    /// Deliver `out` from `p` and every answer, until nothing is in
    /// flight. Returns what `p` sent to learners.
    fn exchange(&mut self, p: &mut Proposer, out: Output<ProposerWrite>) -> Vec<Message> {
        let mut to_learners = Vec::new();
        let mut queue: VecDeque<_> = out.send.into_iter().collect();
        while let Some(outgoing) = queue.pop_front() {
            let to = outgoing.to;
            match to.role {
                Role::Learner => to_learners.push(outgoing.message),
                Role::Acceptor => {
                    let acceptor = self.acceptors.get_mut(&to.index).expect("acceptor");
                    for answer in acceptor.handle(p.id(), outgoing.message).send {
                        let message = self.control(answer.message);
                        queue.extend(p.handle(self.now, to, message).send);
                    }
                }
                Role::Proposer => {}
            }
        }
        to_learners
    }

    fn control(&self, message: Message) -> Message {
        match message {
            Message::InstanceVotes { ballot, from, .. } if self.blind_carry => {
                Message::InstanceVotes {
                    ballot,
                    from,
                    votes: Vec::new(),
                    next: None,
                }
            }
            message => message,
        }
    }

    /// Tick `p` (50 ms apart) and deliver, until `done` holds.
    fn run_until(
        &mut self,
        p: &mut Proposer,
        mut done: impl FnMut(&Proposer, &[Message]) -> bool,
    ) -> Vec<Message> {
        let mut decided = Vec::new();
        for _ in 0..200 {
            let out = p.tick(self.now);
            decided.extend(self.exchange(p, out));
            if done(p, &decided) {
                return decided;
            }
            self.now += 50;
        }
        panic!("not done after 10 s: {:?}", p.epoch());
    }
}

fn instance_value(messages: &[Message]) -> Option<Vec<u8>> {
    messages.iter().find_map(|m| match m {
        Message::InstanceDecided { name, value } if name == "r" => Some(value.clone()),
        _ => None,
    })
}

/// What proposer 2 decides for `r` in epoch 1, after `old` was chosen in
/// epoch 0 and the acceptors were all replaced.
fn decided_after_replacing_every_acceptor(blind_carry: bool) -> Vec<u8> {
    let mut cluster = Cluster::new(blind_carry);
    let mut first = Proposer::new(config(1), ProposerState::default(), 0);
    let started = first.start(0);
    cluster.exchange(&mut first, started);
    cluster.run_until(&mut first, |p, _| p.leading_ballot().is_some());

    let now = cluster.now;
    let proposed = first.propose_instance(now, "r".into(), b"old".to_vec());
    let decided = cluster.exchange(&mut first, proposed);
    assert_eq!(instance_value(&decided), Some(b"old".to_vec()));

    let next = epoch_0().with_acceptors(vec![4, 5, 6], Quorums::majority(3));
    let stop = first
        .reconfigure(now, next)
        .expect("the leader reconfigures");
    cluster.exchange(&mut first, stop);
    cluster.run_until(&mut first, |p, _| {
        p.epoch().membership.epoch == 1 && p.leading_ballot().is_some() && p.instances_carried()
    });

    // Proposer 2 already works in epoch 1 (it learned it from the log).
    let moved = ProposerState {
        max_round: 1,
        epoch: Some(first.epoch().clone()),
        rounds_known_in: 1,
    };
    let mut second = Proposer::new(config(2), moved, cluster.now);
    let proposed = second.propose_instance(cluster.now, "r".into(), b"new".to_vec());
    let mut decided = cluster.exchange(&mut second, proposed);
    if instance_value(&decided).is_none() {
        decided = cluster.run_until(&mut second, |_, d| instance_value(d).is_some());
    }
    instance_value(&decided).expect("decided")
}

#[test]
fn an_instance_chosen_before_every_acceptor_was_replaced_stays_chosen() {
    assert_eq!(decided_after_replacing_every_acceptor(false), b"old");
}

#[test]
fn negative_control_a_carry_that_reads_nothing_decides_an_instance_twice() {
    assert_eq!(decided_after_replacing_every_acceptor(true), b"new");
}

/// Acceptor `id`, told by a leader that epoch 1 (acceptors 4–6) follows
/// epoch 0 (acceptors 1–3).
fn told_of_epoch_1(id: u32) -> Acceptor {
    let epoch = Epoch::initial(epoch_0());
    let next = epoch_0().with_acceptors(vec![4, 5, 6], Quorums::majority(3));
    let mut acceptor = Acceptor::new(id, AcceptorState::default());
    let info = Message::EpochInfo {
        epoch: epoch.next(next, 5),
    };
    acceptor.handle(RoleId::proposer(1), info);
    assert_eq!(
        acceptor.state().epoch.as_ref().map(|e| e.membership.epoch),
        Some(1)
    );
    acceptor
}

#[test]
fn new_acceptors_vote_on_instances_only_once_the_carry_completed() {
    let mut acceptor = told_of_epoch_1(4);
    let leader = RoleId::proposer(1);
    let ballot = synod_core::Ballot::in_epoch(1, 3, 1);
    let prepare = Message::InstancePrepare {
        name: "r".into(),
        ballot,
    };
    let out = acceptor.handle(leader, prepare.clone());
    assert!(out.send.is_empty() && out.persist.is_empty(), "{out:?}");
    let open = Message::InstanceCarry {
        ballot: synod_core::Ballot::in_epoch(1, 0, 1),
        page: synod_core::CarryPage::default(),
        votes: Vec::new(),
        open: true,
    };
    acceptor.handle(leader, open);
    let out = acceptor.handle(leader, prepare);
    assert!(
        matches!(out.send[0].message, Message::InstancePromise { .. }),
        "{out:?}"
    );
}

#[test]
fn an_old_acceptor_refuses_instance_ballots_of_the_epoch_it_left() {
    let mut acceptor = told_of_epoch_1(1);
    let leader = RoleId::proposer(1);
    let accept = Message::InstanceAccept {
        name: "r".into(),
        ballot: synod_core::Ballot::new(7, 2),
        value: b"late".to_vec(),
    };
    let out = acceptor.handle(leader, accept);
    let Message::InstanceNack { promised, .. } = &out.send[0].message else {
        panic!("{out:?}")
    };
    assert_eq!(
        promised.epoch, 1,
        "the proposer learns a later epoch exists"
    );
    assert!(acceptor.state().instances.is_empty(), "nothing accepted");
}
