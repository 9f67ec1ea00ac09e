use super::*;
use crate::message::AcceptedRegister;
use crate::types::{ClockStamp, CommandId};
use std::collections::BTreeSet;

const ME: u32 = 1;

fn config() -> ProposerConfig {
    let mut c = ProposerConfig::new(ME, vec![1, 2], vec![1, 2, 3], vec![1]);
    c.pipeline_window = 2;
    c.batch_max_commands = 2;
    c
}

fn command(client: u64) -> Command {
    Command {
        id: CommandId { client, seq: 1 },
        payload: vec![0; 8],
    }
}

/// A proposer resuming from `state` at time 0. One whose store holds no
/// round is taken past round discovery: acceptors 1 and 2 (a phase-2
/// quorum) report that they promised nothing.
fn proposer_on(c: ProposerConfig, state: ProposerState, now: Millis) -> Proposer {
    let mut p = Proposer::new(c, state, now);
    for a in [1, 2] {
        let report = Message::RoundReport {
            promised: Ballot::ZERO,
        };
        p.handle(now, RoleId::acceptor(a), report);
    }
    assert!(p.knows_its_rounds());
    p
}

fn follower() -> Proposer {
    proposer_on(config(), ProposerState::default(), 0)
}

fn messages(out: &Output<ProposerWrite>) -> Vec<(RoleId, Message)> {
    out.send.iter().map(|o| (o.to, o.message.clone())).collect()
}

/// Run an election to completion: time out, then promises from acceptors 1 and 2.
fn leader() -> (Proposer, Ballot) {
    leader_with(config())
}

/// [`leader`] with config `c`.
fn leader_with(c: ProposerConfig) -> (Proposer, Ballot) {
    let mut p = proposer_on(c, ProposerState::default(), 0);
    let out = p.tick(1_000);
    let Message::Prepare { ballot, .. } = out.send[0].message else {
        panic!("no prepare")
    };
    for a in [1, 2] {
        p.handle(
            1_000,
            RoleId::acceptor(a),
            Message::Promise {
                ballot,
                accepted: vec![],
                from_slot: 0,
                next: None,
                chosen_upto: 0,
                trimmed_below: 0,
            },
        );
    }
    assert_eq!(p.leading_ballot(), Some(ballot));
    (p, ballot)
}

#[test]
fn election_timeout_persists_round_before_prepare() {
    let mut p = follower();
    assert!(p.tick(10).is_empty(), "no election before the timeout");
    let out = p.tick(1_000);
    assert_eq!(out.persist, vec![ProposerWrite::Round(1)]);
    let ballot = Ballot::new(1, ME);
    let prepares: Vec<_> = messages(&out).into_iter().map(|(to, _)| to).collect();
    assert_eq!(
        prepares,
        vec![
            RoleId::acceptor(1),
            RoleId::acceptor(2),
            RoleId::acceptor(3)
        ]
    );
    assert_eq!(
        out.send[0].message,
        Message::Prepare {
            ballot,
            from_slot: 0
        }
    );
}

#[test]
fn restarted_proposer_never_reuses_a_round() {
    let mut p = proposer_on(
        config(),
        ProposerState {
            max_round: 41,
            ..Default::default()
        },
        0,
    );
    let out = p.tick(1_000);
    assert_eq!(out.persist, vec![ProposerWrite::Round(42)]);
}

fn round_report(round: u64, proposer: u32) -> Message {
    Message::RoundReport {
        promised: Ballot::new(round, proposer),
    }
}

#[test]
fn a_proposer_on_an_empty_store_starts_above_every_round_a_phase2_quorum_promised() {
    let mut p = Proposer::new(config(), ProposerState::default(), 0);
    let asked = |out: &Output<ProposerWrite>| {
        let queries: Vec<_> = messages(out)
            .into_iter()
            .filter(|(_, m)| *m == Message::RoundQuery)
            .map(|(to, _)| to)
            .collect();
        queries == [1, 2, 3].map(RoleId::acceptor)
    };
    assert!(asked(&p.start(0)), "it asks every acceptor at start");
    assert!(!p.knows_its_rounds());

    // The election timeout passes: no ballot yet, the question again.
    let out = p.tick(1_000);
    assert!(out.persist.is_empty(), "no round taken: {out:?}");
    assert!(asked(&out));
    // One answer is not a phase-2 quorum.
    p.handle(1_000, RoleId::acceptor(1), round_report(7, ME));
    let out = p.tick(1_050);
    assert!(out.persist.is_empty() && out.send.is_empty(), "{out:?}");
    // A second acceptor makes a quorum; the first round is above both.
    p.handle(1_050, RoleId::acceptor(3), round_report(4, 2));
    assert!(p.knows_its_rounds());
    let out = p.tick(1_100);
    assert_eq!(out.persist, vec![ProposerWrite::Round(8)]);
    assert!(matches!(
        out.send[0].message,
        Message::Prepare { ballot, .. } if ballot == Ballot::new(8, ME)
    ));
}

#[test]
fn a_register_on_an_empty_store_waits_for_round_discovery() {
    let mut p = Proposer::new(config(), ProposerState::default(), 0);
    p.start(0);
    let out = p.propose_instance(0, "x".into(), b"v".to_vec());
    assert!(out.persist.is_empty() && out.send.is_empty(), "{out:?}");
    p.handle(10, RoleId::acceptor(2), round_report(3, 2));
    p.handle(10, RoleId::acceptor(3), round_report(5, ME));
    let deadline = p.next_deadline().expect("the register retries");
    let out = p.tick(deadline);
    assert_eq!(out.persist, vec![ProposerWrite::Round(6)]);
    let prepare = Message::InstancePrepare {
        name: "x".into(),
        ballot: Ballot::new(6, ME),
    };
    assert!(messages(&out).contains(&(RoleId::acceptor(1), prepare)));
}

#[test]
fn a_proposer_whose_store_holds_a_round_asks_nothing() {
    let mut p = Proposer::new(
        config(),
        ProposerState {
            max_round: 3,
            ..Default::default()
        },
        0,
    );
    assert!(p.knows_its_rounds());
    assert!(p.start(0).is_empty());
}

#[test]
fn leader_adopts_highest_ballot_value_and_fills_holes_with_noops() {
    let mut p = follower();
    let out = p.tick(1_000);
    let Message::Prepare { ballot, .. } = out.send[0].message else {
        panic!()
    };
    let old = Value::batch(vec![command(1)]);
    let newer = Value::batch(vec![command(2)]);
    let entry = |slot, round, value: &Value| AcceptedEntry {
        slot,
        ballot: Ballot::new(round, 2),
        value: value.clone(),
    };
    p.handle(
        1_000,
        RoleId::acceptor(1),
        Message::Promise {
            ballot,
            accepted: vec![entry(0, 1, &old), entry(2, 1, &old)],
            from_slot: 0,
            next: None,
            chosen_upto: 0,
            trimmed_below: 0,
        },
    );
    let out = p.handle(
        1_000,
        RoleId::acceptor(2),
        Message::Promise {
            ballot,
            accepted: vec![entry(0, 3, &newer)],
            from_slot: 0,
            next: None,
            chosen_upto: 0,
            trimmed_below: 0,
        },
    );
    let accepts: Vec<(Slot, Value)> = out
        .send
        .iter()
        .filter_map(|o| match &o.message {
            Message::Accept { slot, value, .. } if o.to == RoleId::acceptor(1) => {
                Some((*slot, value.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(accepts, vec![(0, newer), (1, Value::Noop), (2, old)]);
}

#[test]
fn leader_batches_commands_within_the_pipeline_window() {
    let (mut p, ballot) = leader();
    let out = p.submit(1_000, (0..5).map(command).collect()).unwrap();
    let slots: BTreeSet<Slot> = out
        .send
        .iter()
        .filter_map(|o| match &o.message {
            Message::Accept { slot, value, .. } => {
                assert_eq!(value.commands().len(), 2, "batch_max_commands");
                Some(*slot)
            }
            _ => None,
        })
        .collect();
    assert_eq!(slots, BTreeSet::from([0, 1]), "window of 2");
    // A majority of Accepted decides slot 0 and frees a window place.
    p.handle(
        1_000,
        RoleId::acceptor(1),
        Message::Accepted { ballot, slot: 0 },
    );
    let out = p.handle(
        1_000,
        RoleId::acceptor(3),
        Message::Accepted { ballot, slot: 0 },
    );
    let decided = Message::Decided {
        slot: 0,
        value: Value::batch(vec![command(0), command(1)]),
    };
    assert!(messages(&out).contains(&(RoleId::learner(1), decided)));
    assert!(
        out.send
            .iter()
            .any(|o| matches!(o.message, Message::Accept { slot: 2, .. }))
    );
    assert_eq!(p.first_unchosen(), 1);
}

#[test]
fn byte_limit_caps_a_batch_but_one_large_command_still_goes() {
    let mut c = config();
    c.batch_max_bytes = 10;
    c.batch_max_commands = 100;
    let mut p = proposer_on(c, ProposerState::default(), 0);
    let out = p.tick(1_000);
    let Message::Prepare { ballot, .. } = out.send[0].message else {
        panic!()
    };
    for a in [1, 2] {
        p.handle(
            1_000,
            RoleId::acceptor(a),
            Message::Promise {
                ballot,
                accepted: vec![],
                from_slot: 0,
                next: None,
                chosen_upto: 0,
                trimmed_below: 0,
            },
        );
    }
    let out = p.submit(1_000, vec![command(1), command(2)]).unwrap();
    let sizes: Vec<usize> = out
        .send
        .iter()
        .filter(|o| o.to == RoleId::acceptor(1))
        .filter_map(|o| match &o.message {
            Message::Accept { value, .. } => Some(value.commands().len()),
            _ => None,
        })
        .collect();
    assert_eq!(sizes, vec![1, 1]);
}

#[test]
fn accepted_from_an_old_ballot_does_not_count() {
    let (mut p, ballot) = leader();
    p.submit(1_000, vec![command(1)]).unwrap();
    let stale = Ballot::new(ballot.round - 1, 2);
    p.handle(
        1_000,
        RoleId::acceptor(1),
        Message::Accepted {
            ballot: stale,
            slot: 0,
        },
    );
    let out = p.handle(
        1_000,
        RoleId::acceptor(2),
        Message::Accepted {
            ballot: stale,
            slot: 0,
        },
    );
    assert!(out.send.is_empty());
    assert_eq!(p.first_unchosen(), 0);
}

#[test]
fn nack_aborts_the_ballot_and_the_retry_uses_a_higher_round() {
    let (mut p, ballot) = leader();
    let promised = Ballot::new(7, 2);
    p.handle(
        1_000,
        RoleId::acceptor(1),
        Message::Nack { ballot, promised },
    );
    assert_eq!(p.leading_ballot(), None);
    let mut retry = None;
    for now in 1_001..2_000 {
        let out = p.tick(now);
        if let Some(Message::Prepare { ballot, .. }) = out.send.first().map(|o| &o.message) {
            retry = Some(*ballot);
            break;
        }
    }
    assert_eq!(retry, Some(Ballot::new(8, ME)));
}

#[test]
fn stale_nack_is_ignored() {
    let (mut p, ballot) = leader();
    let older = Ballot::new(ballot.round - 1, ME);
    p.handle(
        1_000,
        RoleId::acceptor(1),
        Message::Nack {
            ballot: older,
            promised: Ballot::new(9, 2),
        },
    );
    assert_eq!(p.leading_ballot(), Some(ballot));
}

#[test]
fn leader_heartbeats_and_followers_stay_quiet() {
    let (mut p, ballot) = leader();
    let out = p.tick(1_100);
    assert!(messages(&out).contains(&(
        RoleId::proposer(2),
        Message::Heartbeat {
            ballot,
            decided_upto: 0
        }
    )));

    let mut f = proposer_on(
        ProposerConfig::new(2, vec![1, 2], vec![1, 2, 3], vec![1]),
        ProposerState::default(),
        0,
    );
    for now in (0..3_000).step_by(50) {
        f.handle(
            now,
            RoleId::proposer(1),
            Message::Heartbeat {
                ballot,
                decided_upto: 0,
            },
        );
        assert!(
            f.tick(now).is_empty(),
            "a follower hearing heartbeats never campaigns"
        );
    }
    assert_eq!(f.known_leader(), Some(1));
}

#[test]
fn follower_forwards_commands_to_the_leader() {
    let mut f = follower();
    f.handle(
        0,
        RoleId::proposer(2),
        Message::Heartbeat {
            ballot: Ballot::new(3, 2),
            decided_upto: 0,
        },
    );
    let out = f.submit(0, vec![command(1)]).unwrap();
    assert_eq!(
        messages(&out),
        vec![(
            RoleId::proposer(2),
            Message::Forward {
                commands: vec![command(1)]
            }
        )]
    );
}

#[test]
fn commands_queued_without_a_leader_are_forwarded_once_one_is_known() {
    let mut f = follower();
    assert!(f.submit(0, vec![command(1)]).unwrap().send.is_empty());
    let out = f.handle(
        0,
        RoleId::proposer(2),
        Message::Heartbeat {
            ballot: Ballot::new(3, 2),
            decided_upto: 0,
        },
    );
    assert_eq!(
        messages(&out),
        vec![(
            RoleId::proposer(2),
            Message::Forward {
                commands: vec![command(1)]
            }
        )]
    );
}

#[test]
fn full_queue_answers_busy() {
    let mut c = config();
    c.queue_limit = 1;
    let mut p = proposer_on(c, ProposerState::default(), 0);
    assert!(p.submit(0, vec![command(1)]).is_ok());
    assert_eq!(p.submit(0, vec![command(2)]), Err(Busy));
}

#[test]
fn unanswered_accepts_are_retransmitted() {
    let (mut p, ballot) = leader();
    p.submit(1_000, vec![command(1)]).unwrap();
    p.handle(
        1_000,
        RoleId::acceptor(1),
        Message::Accepted { ballot, slot: 0 },
    );
    let out = p.tick(1_000 + p.config.retransmit_interval);
    let resent: Vec<RoleId> = out
        .send
        .iter()
        .filter(|o| matches!(o.message, Message::Accept { .. }))
        .map(|o| o.to)
        .collect();
    assert_eq!(resent, vec![RoleId::acceptor(2), RoleId::acceptor(3)]);
}

#[test]
fn escalated_catch_up_for_an_unknown_slot_reruns_phase_one_from_it() {
    let mut p = follower();
    // A heartbeat says slots below 5 are decided, but this proposer holds none.
    p.handle(
        0,
        RoleId::proposer(2),
        Message::Heartbeat {
            ballot: Ballot::new(1, 2),
            decided_upto: 5,
        },
    );
    let out = p.tick(10_000);
    let Message::Prepare { ballot, from_slot } = out.send[0].message else {
        panic!()
    };
    assert_eq!(from_slot, 5);
    for a in [1, 2] {
        p.handle(
            10_000,
            RoleId::acceptor(a),
            Message::Promise {
                ballot,
                accepted: vec![],
                from_slot: 5,
                next: None,
                chosen_upto: 0,
                trimmed_below: 0,
            },
        );
    }
    let learner = RoleId::learner(1);
    let plain = p.handle(
        10_000,
        learner,
        Message::CatchUp {
            from_slot: 2,
            to_slot: 5,
            escalate: false,
        },
    );
    assert!(plain.send.is_empty());
    let out = p.handle(
        10_000,
        learner,
        Message::CatchUp {
            from_slot: 2,
            to_slot: 5,
            escalate: true,
        },
    );
    assert!(
        out.send
            .iter()
            .all(|o| matches!(o.message, Message::Prepare { from_slot: 2, .. }))
    );
    assert_eq!(out.persist.len(), 1);
}

#[test]
fn single_decree_adopts_an_accepted_value_over_its_own() {
    let mut p = follower();
    let out = p.propose_instance(0, "leader".into(), b"mine".to_vec());
    assert_eq!(out.persist, vec![ProposerWrite::Round(1)]);
    let ballot = Ballot::new(1, ME);
    let theirs = AcceptedRegister {
        ballot: Ballot::new(0, 2),
        value: b"theirs".to_vec(),
    };
    p.handle(
        0,
        RoleId::acceptor(1),
        Message::InstancePromise {
            name: "leader".into(),
            ballot,
            accepted: Some(theirs),
        },
    );
    let out = p.handle(
        0,
        RoleId::acceptor(2),
        Message::InstancePromise {
            name: "leader".into(),
            ballot,
            accepted: None,
        },
    );
    assert_eq!(
        out.send[0].message,
        Message::InstanceAccept {
            name: "leader".into(),
            ballot,
            value: b"theirs".to_vec()
        }
    );
    p.handle(
        0,
        RoleId::acceptor(1),
        Message::InstanceAccepted {
            name: "leader".into(),
            ballot,
        },
    );
    let out = p.handle(
        0,
        RoleId::acceptor(3),
        Message::InstanceAccepted {
            name: "leader".into(),
            ballot,
        },
    );
    assert_eq!(
        messages(&out),
        vec![(
            RoleId::learner(1),
            Message::InstanceDecided {
                name: "leader".into(),
                value: b"theirs".to_vec()
            }
        )]
    );
    // Announced until the learner acknowledges.
    assert_eq!(p.tick(200).send.len(), 1);
    p.handle(
        200,
        RoleId::learner(1),
        Message::InstanceLearned {
            name: "leader".into(),
        },
    );
    assert!(
        p.tick(1_000)
            .send
            .iter()
            .all(|o| !matches!(o.message, Message::InstanceDecided { .. }))
    );
}

#[test]
fn single_decree_nack_backs_off_then_retries_higher() {
    let mut p = follower();
    p.propose_instance(0, "x".into(), vec![1]);
    let promised = Ballot::new(5, 2);
    p.handle(
        0,
        RoleId::acceptor(1),
        Message::InstanceNack {
            name: "x".into(),
            ballot: Ballot::new(1, ME),
            promised,
        },
    );
    let mut retried = None;
    for now in 1..500 {
        let out = p.tick(now);
        if let Some(o) = out
            .send
            .iter()
            .find(|o| matches!(o.message, Message::InstancePrepare { .. }))
        {
            retried = Some(o.message.clone());
            break;
        }
    }
    assert_eq!(
        retried,
        Some(Message::InstancePrepare {
            name: "x".into(),
            ballot: Ballot::new(6, ME)
        })
    );
}

fn heartbeat_from_2(ballot: Ballot) -> Message {
    Message::Heartbeat {
        ballot,
        decided_upto: 0,
    }
}

fn sends_heartbeat(out: &Output<ProposerWrite>) -> bool {
    out.send
        .iter()
        .any(|o| matches!(o.message, Message::Heartbeat { .. }))
}

#[test]
fn a_leader_whose_accepts_reach_no_majority_gives_up_its_ballot() {
    let (mut p, ballot) = leader();
    let timeout = p.config.quorum_timeout;
    p.submit(1_000, vec![command(1)]).unwrap();
    // Only one of three acceptors answers: no majority.
    p.handle(
        1_010,
        RoleId::acceptor(1),
        Message::Accepted { ballot, slot: 0 },
    );
    let before = p.tick(1_000 + timeout - 1);
    assert_eq!(p.leading_ballot(), Some(ballot));
    assert!(sends_heartbeat(&before));

    let after = p.tick(1_000 + timeout);
    assert_eq!(p.leading_ballot(), None, "the ballot is given up");
    assert!(!sends_heartbeat(&after), "and the heartbeats stop");
    // Another proposer takes over; the queued command goes to it.
    let out = p.handle(
        1_000 + timeout + 10,
        RoleId::proposer(2),
        heartbeat_from_2(Ballot::new(ballot.round + 1, 2)),
    );
    assert_eq!(p.known_leader(), Some(2));
    assert!(messages(&out).contains(&(
        RoleId::proposer(2),
        Message::Forward {
            commands: vec![command(1)]
        }
    )));
}

#[test]
fn a_leader_that_hears_a_majority_keeps_its_ballot() {
    let (mut p, ballot) = leader();
    let timeout = p.config.quorum_timeout;
    p.submit(1_000, vec![command(1)]).unwrap();
    for a in [1, 3] {
        p.handle(
            1_010,
            RoleId::acceptor(a),
            Message::Accepted { ballot, slot: 0 },
        );
    }
    for now in (1_000..1_000 + 5 * timeout).step_by(50) {
        p.tick(now);
    }
    assert_eq!(
        p.leading_ballot(),
        Some(ballot),
        "idle and decided: still leading"
    );
}

#[test]
fn a_candidate_without_promises_gives_up_and_follows_a_live_leader() {
    let mut p = proposer_on(
        config(),
        ProposerState {
            max_round: 5,
            ..Default::default()
        },
        0,
    );
    let timeout = p.config.quorum_timeout;
    p.tick(1_000); // campaigns with round 6; no acceptor answers
    let lower = Ballot::new(3, 2);
    p.handle(1_050, RoleId::proposer(2), heartbeat_from_2(lower));
    assert_eq!(
        p.known_leader(),
        None,
        "a lower ballot does not stop a fresh campaign"
    );

    p.tick(1_000 + timeout);
    p.handle(
        1_000 + timeout + 50,
        RoleId::proposer(2),
        heartbeat_from_2(lower),
    );
    assert_eq!(p.known_leader(), Some(2), "after giving up it follows");
    assert!(
        p.tick(1_000 + timeout + 60).send.is_empty(),
        "and does not campaign while it hears the leader"
    );
}

fn accepts(out: &Output<ProposerWrite>) -> BTreeSet<Slot> {
    out.send
        .iter()
        .filter_map(|o| match o.message {
            Message::Accept { slot, .. } => Some(slot),
            _ => None,
        })
        .collect()
}

fn sized(seq: u64, payload: usize) -> Command {
    Command {
        id: CommandId { client: 9, seq },
        payload: vec![0; payload],
    }
}

#[test]
fn the_pipeline_stops_at_its_byte_bound() {
    let (mut p, _) = leader();
    p.config.pipeline_window = 10;
    p.config.batch_max_commands = 1;
    p.config.pipeline_max_bytes = 100;
    // Each command is 56 bytes: the second slot reaches the bound.
    let commands = (1..=5).map(|seq| sized(seq, 40)).collect();
    let out = p.submit(1_000, commands).unwrap();
    assert_eq!(accepts(&out), BTreeSet::from([0, 1]));
    // One value larger than the bound still goes when nothing is in flight.
    let (mut q, _) = leader();
    q.config.pipeline_max_bytes = 100;
    let out = q.submit(1_000, vec![sized(1, 1_000)]).unwrap();
    assert_eq!(accepts(&out), BTreeSet::from([0]));
}

#[test]
fn beyond_the_eager_slots_only_a_full_batch_opens_a_slot() {
    let (mut p, ballot) = leader();
    p.config.pipeline_window = 10;
    p.config.pipeline_eager = 1;
    p.config.batch_max_commands = 3;
    // Nothing in flight: a lone command goes at once.
    let out = p.submit(1_000, vec![command(1)]).unwrap();
    assert_eq!(accepts(&out), BTreeSet::from([0]));
    // One slot in flight: two commands are not a full batch; they wait.
    let out = p.submit(1_000, vec![command(2), command(3)]).unwrap();
    assert!(accepts(&out).is_empty());
    assert_eq!(p.queue.len(), 2);
    // A third fills the batch: it opens a slot although one is in flight.
    let out = p.submit(1_000, vec![command(4)]).unwrap();
    assert_eq!(accepts(&out), BTreeSet::from([1]));
    assert!(p.queue.is_empty());
    // A partial batch waits until fewer than `pipeline_eager` (1) slots
    // are in flight: deciding slot 0 leaves slot 1; deciding slot 1 lets
    // it go.
    p.submit(1_000, vec![command(5)]).unwrap();
    for slot in [0, 1] {
        p.handle(
            1_000,
            RoleId::acceptor(1),
            Message::Accepted { ballot, slot },
        );
        let out = p.handle(
            1_000,
            RoleId::acceptor(2),
            Message::Accepted { ballot, slot },
        );
        let opened = accepts(&out);
        if slot == 0 {
            assert!(opened.is_empty(), "slot 1 still in flight");
        } else {
            assert_eq!(opened, BTreeSet::from([2]), "the pipeline drained");
        }
    }
    assert!(p.queue.is_empty());
    // A full batch by bytes counts too.
    p.config.batch_max_bytes = 2 * command(6).encoded_len();
    p.submit(1_000, vec![command(6)]).unwrap();
    let out = p.submit(1_000, vec![command(7)]).unwrap();
    assert_eq!(accepts(&out), BTreeSet::from([3]));
}

#[test]
fn a_command_resent_while_it_waits_is_queued_once() {
    let (mut p, _) = leader();
    p.config.pipeline_window = 1;
    p.submit(1_000, vec![sized(1, 8), sized(2, 8)]).unwrap();
    // Slot 0 holds both (batch of 2); these wait for the next slot.
    p.submit(1_000, vec![sized(3, 8)]).unwrap();
    p.submit(1_001, vec![sized(3, 8)]).unwrap();
    assert_eq!(p.queue.len(), 1);
}

#[test]
fn accept_resends_back_off() {
    let (mut p, _) = leader();
    let base = p.config.retransmit_interval;
    p.config.quorum_timeout = 100 * base; // keep leading throughout
    p.submit(1_000, vec![command(1)]).unwrap();
    let resends: Vec<Millis> = (1_000..1_000 + 40 * base)
        .filter(|now| !accepts(&p.tick(*now)).is_empty())
        .collect();
    let gaps: Vec<Millis> = resends.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(resends[0], 1_000 + base);
    assert_eq!(gaps[..3], [2 * base, 4 * base, 8 * base]);
    assert!(gaps[3..].iter().all(|gap| *gap == 8 * base), "{gaps:?}");
}

fn batch_of(client: u64) -> Value {
    Value::batch(vec![command(client)])
}

fn page(
    ballot: Ballot,
    from_slot: Slot,
    slots: std::ops::Range<Slot>,
    next: Option<Slot>,
    chosen_upto: Slot,
) -> Message {
    Message::Promise {
        ballot,
        from_slot,
        accepted: slots
            .map(|slot| AcceptedEntry {
                slot,
                ballot: Ballot::new(1, 2),
                value: batch_of(slot),
            })
            .collect(),
        next,
        chosen_upto,
        trimmed_below: 0,
    }
}

fn prepares_to(out: &Output<ProposerWrite>, acceptor: u32) -> Vec<Slot> {
    out.send
        .iter()
        .filter(|o| o.to == RoleId::acceptor(acceptor))
        .filter_map(|o| match o.message {
            Message::Prepare { from_slot, .. } => Some(from_slot),
            _ => None,
        })
        .collect()
}

fn accepted_slots(out: &Output<ProposerWrite>) -> Vec<Slot> {
    out.send
        .iter()
        .filter(|o| o.to == RoleId::acceptor(1))
        .filter_map(|o| match o.message {
            Message::Accept { slot, .. } => Some(slot),
            _ => None,
        })
        .collect()
}

fn campaign(p: &mut Proposer) -> Ballot {
    let out = p.tick(1_000);
    match out.send[0].message {
        Message::Prepare { ballot, .. } => ballot,
        _ => panic!("no prepare"),
    }
}

#[test]
fn a_promise_counts_only_once_every_page_has_arrived() {
    let mut p = follower();
    let ballot = campaign(&mut p);
    let out = p.handle(
        1_000,
        RoleId::acceptor(1),
        page(ballot, 0, 0..2, Some(2), 0),
    );
    assert_eq!(
        prepares_to(&out, 1),
        vec![2],
        "the next page is asked for at once"
    );
    let dup = p.handle(
        1_000,
        RoleId::acceptor(1),
        page(ballot, 0, 0..2, Some(2), 0),
    );
    assert!(dup.send.is_empty(), "a duplicate page asks for nothing");
    p.handle(1_000, RoleId::acceptor(2), page(ballot, 0, 0..0, None, 0));
    assert_eq!(
        p.leading_ballot(),
        None,
        "acceptor 1 has not reported slots from 2 up"
    );
    let out = p.handle(1_000, RoleId::acceptor(1), page(ballot, 2, 2..3, None, 0));
    assert_eq!(p.leading_ballot(), Some(ballot));
    assert_eq!(
        accepted_slots(&out),
        vec![0, 1, 2],
        "every reported slot re-proposed"
    );
}

#[test]
fn a_retransmitted_prepare_asks_each_acceptor_from_where_it_stopped() {
    let mut p = follower();
    let ballot = campaign(&mut p);
    p.handle(
        1_000,
        RoleId::acceptor(1),
        page(ballot, 0, 0..4, Some(4), 0),
    );
    p.handle(1_000, RoleId::acceptor(2), page(ballot, 0, 0..0, None, 0));
    let out = p.tick(1_000 + config().retransmit_interval);
    assert_eq!(prepares_to(&out, 1), vec![4]);
    assert!(prepares_to(&out, 2).is_empty(), "complete: nothing to ask");
    assert_eq!(
        prepares_to(&out, 3),
        vec![0],
        "never answered: from the start"
    );
}

#[test]
fn prepare_resends_back_off_and_a_page_resets_them() {
    let mut p = follower();
    let base = p.config.retransmit_interval;
    p.config.quorum_timeout = 100 * base; // keep campaigning throughout
    let ballot = campaign(&mut p);
    let resends = |p: &mut Proposer, from: Millis, to: Millis| -> Vec<Millis> {
        (from..to)
            .filter(|now| !prepares_to(&p.tick(*now), 3).is_empty())
            .collect()
    };
    let first = resends(&mut p, 1_001, 1_000 + 40 * base);
    let gaps: Vec<Millis> = first.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(first[0], 1_000 + base);
    assert_eq!(gaps[..3], [2 * base, 4 * base, 8 * base]);
    assert!(gaps[3..].iter().all(|gap| *gap == 8 * base), "{gaps:?}");
    // A page from acceptor 1 is progress: the wait is one interval again
    // (from the last resend), not eight.
    let last = *first.last().unwrap();
    let at = last + 1;
    let out = p.handle(at, RoleId::acceptor(1), page(ballot, 0, 0..4, Some(4), 0));
    assert_eq!(prepares_to(&out, 1), vec![4], "the next page at once");
    let after = resends(&mut p, at + 1, at + 4 * base);
    assert_eq!(after[..2], [last + base, last + 3 * base], "{after:?}");
}

#[test]
fn a_restarted_proposer_skips_the_prefix_acceptors_know_is_chosen() {
    let mut p = follower();
    let ballot = campaign(&mut p);
    // Acceptor 1's first page (slots 0..2 of a long log) says 100 are chosen.
    let out = p.handle(
        1_000,
        RoleId::acceptor(1),
        page(ballot, 0, 0..2, Some(2), 100),
    );
    assert_eq!(
        prepares_to(&out, 1),
        vec![100],
        "jumps over the chosen prefix"
    );
    p.handle(
        1_000,
        RoleId::acceptor(1),
        page(ballot, 100, 100..102, None, 100),
    );
    let out = p.handle(1_000, RoleId::acceptor(2), page(ballot, 0, 0..0, None, 0));
    assert_eq!(p.leading_ballot(), Some(ballot));
    assert_eq!(
        accepted_slots(&out),
        vec![100, 101],
        "nothing below 100 re-proposed"
    );
    assert_eq!(p.first_unchosen(), 100);
    let carries = out.send.iter().any(|o| {
        matches!(
            o.message,
            Message::Accept {
                chosen_upto: 100,
                ..
            }
        )
    });
    assert!(carries, "accepts tell acceptors how far the log is chosen");
}

#[test]
fn an_escalated_catch_up_below_the_watermark_recovers_a_window_of_slots() {
    let (mut p, _) = leader();
    p.handle(
        1_000,
        RoleId::proposer(2),
        Message::Heartbeat {
            ballot: Ballot::ZERO,
            decided_upto: 50,
        },
    );
    let out = p.handle(
        1_000,
        RoleId::learner(1),
        Message::CatchUp {
            from_slot: 10,
            to_slot: 50,
            escalate: true,
        },
    );
    let Message::Prepare { ballot, from_slot } = out.send[0].message else {
        panic!("no phase 1: {:?}", out.send)
    };
    assert_eq!(from_slot, 10);
    let window = config().pipeline_window as Slot;
    for a in [1, 2] {
        let out = p.handle(
            1_000,
            RoleId::acceptor(a),
            page(ballot, 10, 10..11, Some(11), 50),
        );
        assert_eq!(prepares_to(&out, a), vec![11], "inside the recovery range");
        let out = p.handle(
            1_000,
            RoleId::acceptor(a),
            page(ballot, 11, 11..10 + window, Some(10 + window), 50),
        );
        assert_eq!(
            prepares_to(&out, a),
            vec![50],
            "past it, the chosen prefix is skipped"
        );
    }
    let mut last = Output::new();
    for a in [1, 2] {
        last = p.handle(
            1_000,
            RoleId::acceptor(a),
            page(ballot, 50, 50..50, None, 50),
        );
    }
    assert_eq!(p.leading_ballot(), Some(ballot));
    let expected: Vec<Slot> = (10..10 + window).collect();
    assert_eq!(accepted_slots(&last), expected);

    // Learners keep asking while the recovered slots are in flight; that
    // must not start phase 1 again (each new ballot would supersede the
    // Accepts of the last, and the recovery would never finish).
    let again = p.handle(
        1_050,
        RoleId::learner(2),
        Message::CatchUp {
            from_slot: 10,
            to_slot: 50,
            escalate: true,
        },
    );
    assert!(
        again.persist.is_empty(),
        "no new round: {:?}",
        again.persist
    );
    assert_eq!(p.leading_ballot(), Some(ballot));
}

#[test]
fn a_long_queue_is_forwarded_in_messages_of_at_most_a_batch() {
    let mut c = config();
    c.batch_max_bytes = 100;
    let mut p = proposer_on(c, ProposerState::default(), 0);
    p.handle(
        0,
        RoleId::proposer(2),
        Message::Heartbeat {
            ballot: Ballot::new(1, 2),
            decided_upto: 0,
        },
    );
    let commands: Vec<Command> = (0..10).map(command).collect();
    let out = p.submit(0, commands).unwrap();
    let sizes: Vec<usize> = out
        .send
        .iter()
        .map(|o| match &o.message {
            Message::Forward { commands } => commands.len(),
            other => panic!("{other:?}"),
        })
        .collect();
    let per_message = 100 / command(0).encoded_len();
    assert!(sizes.iter().all(|n| *n <= per_message.max(1)), "{sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), 10);
}

#[test]
fn a_catch_up_answer_is_bounded_in_bytes() {
    let (mut p, ballot) = leader();
    p.submit(1_000, (0..4).map(command).collect()).unwrap();
    for slot in 0..2 {
        for a in [1, 2] {
            p.handle(
                1_000,
                RoleId::acceptor(a),
                Message::Accepted { ballot, slot },
            );
        }
    }
    p.config.reply_max_bytes = 1;
    let out = p.handle(
        1_000,
        RoleId::learner(1),
        Message::CatchUp {
            from_slot: 0,
            to_slot: 2,
            escalate: false,
        },
    );
    assert_eq!(
        out.send.len(),
        1,
        "one value per answer when each is over the budget"
    );
}

/// Ticks before `next_deadline` do nothing; the tick at it does something.
fn assert_deadline_is_exact(p: &mut Proposer, what: &str) {
    let deadline = p.next_deadline().expect("a proposer always has a deadline");
    let early = p.clone().tick(deadline - 1);
    assert!(
        early.is_empty(),
        "{what}: tick before the deadline: {early:?}"
    );
    let due = p.tick(deadline);
    assert!(!due.is_empty(), "{what}: nothing due at the deadline");
}

#[test]
fn next_deadline_is_when_tick_has_work() {
    assert_deadline_is_exact(&mut follower(), "follower: the election");
    let mut p = follower();
    p.tick(1_000);
    assert_deadline_is_exact(&mut p, "candidate: the Prepare resend");
    let (mut p, _) = leader();
    p.submit(1_000, vec![command(1)]).unwrap();
    assert_deadline_is_exact(&mut p, "leader: a heartbeat or an Accept resend");
    let (mut p, _) = leader();
    let out = p.tick(1_000 + config().heartbeat_interval);
    assert!(!out.is_empty(), "the heartbeat is due");
    assert_deadline_is_exact(&mut p, "idle leader: the next heartbeat");
}

#[test]
fn the_decided_cache_is_bounded_by_bytes() {
    let mut c = config();
    c.decided_cache_bytes = 300;
    c.pipeline_window = 1;
    c.batch_max_commands = 1;
    let (mut p, ballot) = leader_with(c);
    for slot in 0..20 {
        p.submit(1_000, vec![command(slot)]).unwrap();
        for a in [1, 2] {
            p.handle(
                1_000,
                RoleId::acceptor(a),
                Message::Accepted { ballot, slot },
            );
        }
    }
    assert_eq!(p.first_unchosen(), 20);
    let asked = p.handle(
        1_000,
        RoleId::learner(1),
        Message::CatchUp {
            from_slot: 0,
            to_slot: 20,
            escalate: false,
        },
    );
    let cached = asked.send.len();
    let one = Value::batch(vec![command(0)]).encoded_len();
    assert!(
        cached >= 1 && cached * one <= 300 + one,
        "{cached} slots of {one} bytes kept"
    );
    assert!(cached < 20, "the oldest were evicted");
}

/// A leader over learners 1 and 2 that has decided slots `0..decided`.
fn leader_of_two_learners(decided: Slot) -> (Proposer, Ballot) {
    let mut c = config();
    c.learners = vec![1, 2];
    c.initial_learners = vec![1, 2];
    let (mut p, ballot) = leader_with(c);
    p.handle(
        1_000,
        RoleId::proposer(2),
        Message::Heartbeat {
            ballot: Ballot::ZERO,
            decided_upto: decided,
        },
    );
    (p, ballot)
}

fn trims(out: &Output<ProposerWrite>) -> Vec<(RoleId, Slot)> {
    out.send
        .iter()
        .filter_map(|o| match o.message {
            Message::Trim { below, .. } => Some((o.to, below)),
            _ => None,
        })
        .collect()
}

#[test]
fn acceptors_are_trimmed_at_the_lowest_learner_snapshot_once_every_learner_has_one() {
    let (mut p, _) = leader_of_two_learners(100);
    let snapshotted = |p: &mut Proposer, learner, upto| {
        p.handle(
            1_000,
            RoleId::learner(learner),
            Message::Snapshotted { upto },
        )
    };
    assert!(
        trims(&snapshotted(&mut p, 1, 60)).is_empty(),
        "learner 2 has no snapshot yet"
    );
    let out = snapshotted(&mut p, 2, 40);
    let expected: Vec<_> = [1, 2, 3].map(|a| (RoleId::acceptor(a), 40)).into();
    assert_eq!(trims(&out), expected, "the lower of the two");
    assert!(trims(&snapshotted(&mut p, 2, 30)).is_empty(), "never lower");
    assert!(
        trims(&snapshotted(&mut p, 9, 90)).is_empty(),
        "not a learner of the configuration"
    );
    let out = snapshotted(&mut p, 2, 500);
    assert_eq!(trims(&out)[0].1, 60, "learner 1 is now the lowest");
    let out = p.tick(10_000);
    assert_eq!(trims(&out).len(), 3, "heartbeats repeat the trim point");
}

#[test]
fn the_trim_point_never_passes_the_chosen_prefix() {
    let (mut p, _) = leader_of_two_learners(10);
    for learner in [1, 2] {
        p.handle(
            1_000,
            RoleId::learner(learner),
            Message::Snapshotted { upto: 50 },
        );
    }
    assert_eq!(p.trimmed_below, 10);
}

#[test]
fn nothing_below_a_reported_trim_point_is_proposed_or_recovered() {
    let mut p = follower();
    let out = p.tick(1_000);
    let Message::Prepare { ballot, .. } = out.send[0].message else {
        panic!("no prepare")
    };
    let mut accepts = Vec::new();
    for a in [1, 2] {
        let out = p.handle(
            1_000,
            RoleId::acceptor(a),
            Message::Promise {
                ballot,
                accepted: vec![AcceptedEntry {
                    slot: 12,
                    ballot: Ballot::new(1, 2),
                    value: Value::batch(vec![command(1)]),
                }],
                from_slot: 0,
                next: None,
                chosen_upto: if a == 1 { 3 } else { 10 },
                trimmed_below: if a == 1 { 0 } else { 10 },
            },
        );
        accepts.extend(out.send.into_iter().filter_map(|o| match o.message {
            Message::Accept { slot, .. } => Some(slot),
            _ => None,
        }));
    }
    assert_eq!(p.leading_ballot(), Some(ballot));
    assert!(accepts.iter().all(|slot| *slot >= 10), "{accepts:?}");
    assert!(accepts.contains(&12));
    let out = p.handle(
        1_000,
        RoleId::learner(1),
        Message::CatchUp {
            from_slot: 4,
            to_slot: 8,
            escalate: true,
        },
    );
    assert!(
        !out.send
            .iter()
            .any(|o| matches!(o.message, Message::Prepare { .. })),
        "the acceptors no longer hold slots 4..8: no phase 1 for them"
    );
}

/// The clock stamps among the Accepts `out` sends (one per slot).
fn stamps(out: &Output<ProposerWrite>) -> Vec<(Slot, ClockStamp)> {
    let mut stamps: Vec<(Slot, ClockStamp)> = out
        .send
        .iter()
        .filter_map(|o| match &o.message {
            Message::Accept {
                slot,
                value: Value::Clock(stamp),
                ..
            } => Some((*slot, *stamp)),
            _ => None,
        })
        .collect();
    stamps.dedup();
    stamps
}

#[test]
fn a_leader_stamps_its_clock_every_interval_even_with_a_full_window() {
    let mut c = config();
    c.clock_interval = 500;
    let mut p = proposer_on(c, ProposerState::default(), 0);
    let out = p.tick(1_000);
    let Message::Prepare { ballot, .. } = out.send[0].message else {
        panic!("no prepare")
    };
    let promise = Message::Promise {
        ballot,
        accepted: vec![],
        from_slot: 0,
        next: None,
        chosen_upto: 0,
        trimmed_below: 0,
    };
    p.handle(1_000, RoleId::acceptor(1), promise.clone());
    let elected = p.handle(1_000, RoleId::acceptor(2), promise);
    let first = ClockStamp {
        ballot,
        millis: 1_000,
    };
    assert_eq!(stamps(&elected), vec![(0, first)], "stamped once elected");
    p.submit(1_000, (1..=6).map(command).collect()).unwrap();
    assert!(p.next_deadline().unwrap() <= 1_500);
    // (Resends of the first stamp's Accept are not new stamps.)
    let early = stamps(&p.tick(1_499));
    assert!(early.iter().all(|(_, stamp)| *stamp == first), "{early:?}");
    let due = p.tick(1_500);
    let second = ClockStamp {
        ballot,
        millis: 1_500,
    };
    assert!(
        stamps(&due).contains(&(2, second)),
        "past a full window: {:?}",
        stamps(&due)
    );
    // Off: no stamps.
    let (mut quiet, _) = leader();
    for now in (1_000..5_000).step_by(100) {
        assert!(stamps(&quiet.tick(now)).is_empty());
    }
}

/// The `ReadReady`s `out` sends: (learner, id, index).
fn ready_reads(out: &Output<ProposerWrite>) -> Vec<(RoleId, u64, Slot)> {
    out.send
        .iter()
        .filter_map(|o| match o.message {
            Message::ReadReady { id, index } => Some((o.to, id, index)),
            _ => None,
        })
        .collect()
}

/// The confirmation round `out` sends, if any.
fn confirm_round(out: &Output<ProposerWrite>) -> Option<u64> {
    out.send.iter().find_map(|o| match o.message {
        Message::Confirm { round, .. } => Some(round),
        _ => None,
    })
}

#[test]
fn a_read_index_is_the_next_slot_once_a_quorum_confirms_the_ballot() {
    let (mut p, ballot) = leader();
    p.submit(1_000, vec![command(1)]).unwrap(); // slot 0 in flight
    let learner = RoleId::learner(1);
    let asked = p.handle(1_000, learner, Message::ReadIndex { id: 7 });
    let round = confirm_round(&asked).expect("a confirmation round");
    // A read arriving while the round is out waits for the next one.
    let later = p.handle(1_001, learner, Message::ReadIndex { id: 8 });
    assert_eq!(confirm_round(&later), None);
    let confirmed = |p: &mut Proposer, a: u32, round: u64| {
        p.handle(
            1_002,
            RoleId::acceptor(a),
            Message::Confirmed { ballot, round },
        )
    };
    assert!(
        ready_reads(&confirmed(&mut p, 1, round)).is_empty(),
        "one is no quorum"
    );
    let done = confirmed(&mut p, 2, round);
    assert_eq!(ready_reads(&done), vec![(learner, 7, 1)], "past slot 0");
    let next = confirm_round(&done).expect("the waiting read's round");
    assert!(next > round);
    confirmed(&mut p, 1, next);
    assert_eq!(
        ready_reads(&confirmed(&mut p, 3, next)),
        vec![(learner, 8, 1)]
    );
}

#[test]
fn a_leader_superseded_at_the_acceptors_never_makes_a_read_ready() {
    let (mut p, ballot) = leader();
    let learner = RoleId::learner(1);
    let asked = p.handle(1_000, learner, Message::ReadIndex { id: 7 });
    let round = confirm_round(&asked).unwrap();
    let mut acceptor = crate::Acceptor::new(1, crate::AcceptorState::default());
    // The acceptor promised a newer leader meanwhile: it refuses to confirm.
    let newer = Ballot::new(ballot.round + 1, 2);
    acceptor.handle(
        RoleId::proposer(2),
        Message::Prepare {
            ballot: newer,
            from_slot: 0,
        },
    );
    let answer = acceptor.handle(RoleId::proposer(ME), Message::Confirm { ballot, round });
    assert_eq!(
        answer.send[0].message,
        Message::Nack {
            ballot,
            promised: newer
        }
    );
    let out = p.handle(1_001, RoleId::acceptor(1), answer.send[0].message.clone());
    assert!(ready_reads(&out).is_empty());
    assert_eq!(p.leading_ballot(), None, "it stepped down");
    // A confirmation of the old round arriving late answers nothing.
    for a in [2, 3] {
        let late = p.handle(
            1_002,
            RoleId::acceptor(a),
            Message::Confirmed { ballot, round },
        );
        assert!(ready_reads(&late).is_empty());
    }
    // And a follower ignores read requests (the learner asks another).
    let ignored = p.handle(1_003, learner, Message::ReadIndex { id: 9 });
    assert!(confirm_round(&ignored).is_none() && ready_reads(&ignored).is_empty());
}

#[test]
fn an_unanswered_confirmation_is_resent_to_the_silent_acceptors() {
    let (mut p, ballot) = leader();
    let asked = p.handle(1_000, RoleId::learner(1), Message::ReadIndex { id: 1 });
    let round = confirm_round(&asked).unwrap();
    p.handle(
        1_000,
        RoleId::acceptor(1),
        Message::Confirmed { ballot, round },
    );
    assert!(p.next_deadline().unwrap() <= 1_100);
    let resent = p.tick(1_100);
    let to: Vec<RoleId> = resent
        .send
        .iter()
        .filter(|o| matches!(o.message, Message::Confirm { .. }))
        .map(|o| o.to)
        .collect();
    assert_eq!(to, vec![RoleId::acceptor(2), RoleId::acceptor(3)]);
}
