//! Reconfiguration: stop signs, epochs, and reading an earlier epoch.

use super::*;
use crate::types::CommandId;

const ME: u32 = 1;

fn config() -> ProposerConfig {
    let mut c = ProposerConfig::new(ME, vec![1, 2], vec![1, 2, 3], vec![1]);
    c.pipeline_window = 4;
    c.batch_max_commands = 1;
    c
}

fn command(client: u64) -> Command {
    Command {
        id: CommandId { client, seq: 1 },
        payload: vec![client as u8],
    }
}

/// Epoch 0 as `config()` seeds it.
fn initial_membership() -> Membership {
    Membership::initial(vec![1, 2, 3], Quorums::majority(3), vec![1, 2], vec![1])
}

fn next_membership() -> Membership {
    initial_membership().with_acceptors(vec![2, 3, 4], Quorums::majority(3))
}

fn messages(out: &Output<ProposerWrite>) -> Vec<(RoleId, Message)> {
    out.send.iter().map(|o| (o.to, o.message.clone())).collect()
}

/// A proposer past round discovery on `state`.
fn proposer_on(state: ProposerState) -> Proposer {
    let mut p = Proposer::new(config(), state, 0);
    for a in [1, 2, 3, 4] {
        let report = Message::RoundReport {
            promised: Ballot::ZERO,
        };
        p.handle(0, RoleId::acceptor(a), report);
    }
    p
}

/// Acceptors `from` report that they promised nothing.
fn report_rounds(p: &mut Proposer, from: &[u32]) {
    for a in from {
        let report = Message::RoundReport {
            promised: Ballot::ZERO,
        };
        p.handle(10_000, RoleId::acceptor(*a), report);
    }
}

/// Campaign and get promise pages (one each) from acceptors `from`,
/// reporting `accepted` from acceptor `from[0]` only.
fn elect(p: &mut Proposer, from: &[u32], accepted: Vec<AcceptedEntry>) -> Output<ProposerWrite> {
    let out = p.tick(10_000);
    let Some(Message::Prepare { ballot, from_slot }) =
        out.send.iter().map(|o| o.message.clone()).next()
    else {
        panic!("no prepare: {out:?}")
    };
    let mut last = Output::new();
    for (i, a) in from.iter().enumerate() {
        let page = Message::Promise {
            ballot,
            from_slot,
            accepted: if i == 0 { accepted.clone() } else { vec![] },
            next: None,
            chosen_upto: 0,
            trimmed_below: 0,
        };
        last = p.handle(10_000, RoleId::acceptor(*a), page);
    }
    assert!(p.leading_ballot().is_some(), "not elected");
    last
}

fn accepts(out: &Output<ProposerWrite>) -> BTreeMap<Slot, (Value, Slot)> {
    out.send
        .iter()
        .filter_map(|o| match &o.message {
            Message::Accept {
                slot,
                value,
                chosen_upto,
                ..
            } => Some((*slot, (value.clone(), *chosen_upto))),
            _ => None,
        })
        .collect()
}

fn accepted_by(
    p: &mut Proposer,
    slots: std::ops::Range<Slot>,
    acceptors: &[u32],
) -> Output<ProposerWrite> {
    let ballot = p.leading_ballot().expect("leads");
    let mut out = Output::new();
    for slot in slots {
        for a in acceptors {
            let o = p.handle(
                10_000,
                RoleId::acceptor(*a),
                Message::Accepted { ballot, slot },
            );
            out.persist.extend(o.persist);
            out.send.extend(o.send);
        }
    }
    out
}

#[test]
fn a_stop_sign_goes_after_everything_in_flight_and_nothing_follows_it() {
    let mut p = proposer_on(ProposerState::default());
    elect(&mut p, &[1, 2], vec![]);
    let out = p
        .submit(10_000, vec![command(1), command(2)])
        .expect("queued");
    assert_eq!(accepts(&out).keys().copied().collect::<Vec<_>>(), [0, 1]);
    let out = p.reconfigure(10_000, next_membership()).expect("leader");
    let sent = accepts(&out);
    assert!(matches!(sent[&2].0, Value::Reconfigure(_)), "{sent:?}");
    assert_eq!(
        p.reconfigure(10_000, next_membership()),
        Err(ReconfigureError::InProgress)
    );
    let out = p.submit(10_000, vec![command(3)]).expect("queued");
    assert!(accepts(&out).is_empty(), "nothing after the stop sign");

    // Slots 0 and 1 decided: the watermark stops at the stop sign's slot.
    accepted_by(&mut p, 0..2, &[1, 2]);
    assert_eq!(p.watermark(), 2);
    assert_eq!(p.epoch().membership.epoch, 0);

    // The stop sign decided: epoch 1 from slot 3, announced to the
    // acceptors of both epochs, and a campaign there as soon as its
    // acceptors reported the rounds used in it.
    let out = accepted_by(&mut p, 2..3, &[1, 2]);
    let moved = Epoch::initial(initial_membership()).next(next_membership(), 3);
    assert!(out.persist.contains(&ProposerWrite::Epoch(moved.clone())));
    assert_eq!(p.epoch(), &moved);
    let sent = messages(&out);
    for a in [1, 2, 3, 4] {
        let info = Message::EpochInfo {
            epoch: moved.clone(),
        };
        assert!(sent.contains(&(RoleId::acceptor(a), info)), "acceptor {a}");
    }
    for a in [2, 3, 4] {
        assert!(sent.contains(&(RoleId::acceptor(a), Message::RoundQuery)));
    }
    report_rounds(&mut p, &[2, 3]);
    let sent = messages(&p.tick(10_100));
    let prepares: Vec<(RoleId, Ballot, Slot)> = sent
        .iter()
        .filter_map(|(to, m)| match m {
            Message::Prepare { ballot, from_slot } => Some((*to, *ballot, *from_slot)),
            _ => None,
        })
        .collect();
    assert_eq!(prepares.len(), 3, "{prepares:?}");
    for (to, ballot, from_slot) in prepares {
        assert!([2, 3, 4].contains(&to.index));
        assert_eq!((ballot.epoch, from_slot), (1, 3));
    }
}

fn entry(slot: Slot, round: u64, value: Value) -> AcceptedEntry {
    AcceptedEntry {
        slot,
        ballot: Ballot::new(round, 2),
        value,
    }
}

fn stop_sign() -> Value {
    Value::Reconfigure(Box::new(next_membership()))
}

#[test]
fn a_stop_sign_read_before_a_later_page_shows_its_slot_chosen_is_dropped() {
    // Acceptor 1 holds a stop sign at slot 2 that lost: slot 2 was chosen
    // with another value, and acceptor 2 says every slot below 3 is.
    let mut p = proposer_on(ProposerState::default());
    let out = p.tick(10_000);
    let Some(Message::Prepare { ballot, from_slot }) =
        out.send.iter().map(|o| o.message.clone()).next()
    else {
        panic!("no prepare: {out:?}")
    };
    let page = |accepted, chosen_upto| Message::Promise {
        ballot,
        from_slot,
        accepted,
        next: None,
        chosen_upto,
        trimmed_below: 0,
    };
    let stale = vec![entry(2, 1, stop_sign())];
    p.handle(10_000, RoleId::acceptor(1), page(stale, 0));
    let chosen = vec![entry(2, 2, Value::batch(vec![command(9)]))];
    p.handle(10_000, RoleId::acceptor(2), page(chosen, 3));
    assert!(p.leading_ballot().is_some());
    let out = p.submit(10_000, vec![command(1)]).expect("queued");
    assert_eq!(
        accepts(&out).keys().copied().collect::<Vec<_>>(),
        vec![3],
        "the epoch goes on after slot 2"
    );
}

#[test]
fn a_phase_1_that_adopts_a_stop_sign_proposes_nothing_after_it() {
    let mut p = proposer_on(ProposerState::default());
    let reported = vec![
        entry(0, 2, Value::batch(vec![command(1)])),
        entry(1, 3, stop_sign()),
        entry(2, 2, Value::batch(vec![command(2)])),
    ];
    let out = elect(&mut p, &[1, 2], reported);
    let sent = accepts(&out);
    assert_eq!(sent.keys().copied().collect::<Vec<_>>(), [0, 1]);
    assert_eq!(sent[&1].0, stop_sign());
    assert!(sent.values().all(|(_, chosen_upto)| *chosen_upto <= 1));
    let out = p.submit(10_000, vec![command(3)]).expect("queued");
    assert!(accepts(&out).is_empty());
}

#[test]
fn a_stop_sign_outranked_by_a_value_after_it_was_never_chosen_and_becomes_a_noop() {
    let mut p = proposer_on(ProposerState::default());
    let later = Value::batch(vec![command(2)]);
    let reported = vec![entry(1, 2, stop_sign()), entry(2, 3, later.clone())];
    let out = elect(&mut p, &[1, 2], reported);
    let sent = accepts(&out);
    assert_eq!(sent[&1].0, Value::Noop);
    assert_eq!(sent[&2].0, later);
    assert!(p.submit(10_000, vec![command(3)]).is_ok());
}

#[test]
fn a_stop_sign_for_an_epoch_that_does_not_follow_is_void() {
    let mut p = proposer_on(ProposerState::default());
    let mut skipping = next_membership();
    skipping.epoch = 2;
    let reported = vec![entry(0, 2, Value::Reconfigure(Box::new(skipping)))];
    let out = elect(&mut p, &[1, 2], reported);
    assert_eq!(accepts(&out)[&0].0, Value::Noop);
}

fn in_epoch_1(start: Slot) -> ProposerState {
    let first = Epoch::initial(initial_membership());
    ProposerState {
        max_round: 5,
        epoch: Some(first.next(next_membership(), start)),
        rounds_known_in: 1,
    }
}

#[test]
fn a_proposer_discovers_its_rounds_again_in_each_epoch_it_enters() {
    // Wiped, it discovered its rounds among epoch 0's acceptors; an
    // earlier life may have used rounds in epoch 1, which they never saw.
    let mut p = proposer_on(ProposerState::default());
    assert!(p.knows_its_rounds());
    let first = Epoch::initial(initial_membership());
    let epoch = first.next(next_membership(), 0);
    let out = p.handle(10, RoleId::proposer(2), Message::EpochInfo { epoch });
    assert!(
        out.persist
            .contains(&ProposerWrite::Epoch(p.epoch().clone()))
    );
    assert!(
        !p.knows_its_rounds(),
        "epoch 1's acceptors are not asked yet"
    );
    let out = p.tick(10_000);
    let asked: BTreeSet<RoleId> = messages(&out)
        .into_iter()
        .filter(|(_, m)| *m == Message::RoundQuery)
        .map(|(to, _)| to)
        .collect();
    assert_eq!(asked, [2, 3, 4].map(RoleId::acceptor).into());
    let used_before = Ballot::in_epoch(1, 40, ME);
    let mut last = Output::new();
    for a in [2, 4] {
        let report = Message::RoundReport {
            promised: used_before,
        };
        last = p.handle(10_000, RoleId::acceptor(a), report);
    }
    assert_eq!(last.persist, vec![ProposerWrite::RoundsKnown(1)]);
    let out = p.tick(20_000);
    let Some((_, Message::Prepare { ballot, .. })) = messages(&out).into_iter().next() else {
        panic!("no campaign: {out:?}")
    };
    assert!(
        ballot > used_before,
        "{ballot} reuses a round of an earlier life"
    );
}

#[test]
fn a_restart_before_discovery_in_its_epoch_completed_asks_again() {
    let mut state = in_epoch_1(3);
    state.rounds_known_in = 0;
    let p = Proposer::new(config(), state.clone(), 0);
    assert!(!p.knows_its_rounds());
    state.rounds_known_in = 1;
    assert!(Proposer::new(config(), state, 0).knows_its_rounds());
}

#[test]
fn a_later_epoch_campaigns_with_its_acceptors_from_its_first_slot_and_voids_earlier_values() {
    let mut p = proposer_on(in_epoch_1(3));
    assert_eq!(p.first_unchosen(), 3);
    let old = AcceptedEntry {
        slot: 4,
        ballot: Ballot::new(9, 2),
        value: Value::batch(vec![command(7)]),
    };
    let out = elect(&mut p, &[2, 4], vec![old]);
    let ballot = p.leading_ballot().expect("leads");
    assert_eq!(ballot.epoch, 1);
    assert!(accepts(&out).is_empty(), "the epoch-0 value at 4 is void");
    let out = p.submit(10_000, vec![command(1)]).expect("queued");
    let sent: Vec<RoleId> = out.send.iter().map(|o| o.to).collect();
    assert_eq!(sent, [2, 3, 4].map(RoleId::acceptor));
    assert_eq!(accepts(&out).keys().copied().collect::<Vec<_>>(), [3]);
}

#[test]
fn a_proposer_behind_an_epoch_asks_before_it_campaigns_and_moves_to_it() {
    let mut p = proposer_on(ProposerState::default());
    let nack = Message::Nack {
        ballot: Ballot::new(1, ME),
        promised: Ballot::in_epoch(1, 2, 2),
    };
    p.handle(0, RoleId::acceptor(1), nack);
    let out = p.tick(10_000);
    assert!(out.persist.is_empty(), "no round taken: {out:?}");
    assert!(messages(&out).contains(&(RoleId::proposer(2), Message::EpochQuery)));
    assert!(messages(&out).contains(&(RoleId::acceptor(1), Message::EpochQuery)));
    let epoch = in_epoch_1(3).epoch.expect("set");
    let out = p.handle(
        10_000,
        RoleId::acceptor(2),
        Message::EpochInfo {
            epoch: epoch.clone(),
        },
    );
    assert_eq!(out.persist, vec![ProposerWrite::Epoch(epoch)]);
    let deadline = p.next_deadline().expect("an election timer");
    let out = p.tick(deadline);
    assert_eq!(out.send[0].message, Message::RoundQuery, "epoch 1's rounds");
    report_rounds(&mut p, &[2, 3]);
    let out = p.tick(deadline + 100);
    assert!(matches!(
        out.send[0].message,
        Message::Prepare { ballot, from_slot: 3 } if ballot.epoch == 1
    ));
}

#[test]
fn a_learner_missing_a_slot_of_an_earlier_epoch_gets_it_from_that_epochs_acceptors() {
    let mut p = proposer_on(in_epoch_1(3));
    elect(&mut p, &[2, 4], vec![]);
    let ballot = p.leading_ballot().expect("leads");
    let ask = Message::CatchUp {
        from_slot: 1,
        to_slot: 3,
        escalate: true,
    };
    let out = p.handle(10_000, RoleId::learner(1), ask);
    let prepares: Vec<RoleId> = out.send.iter().map(|o| o.to).collect();
    assert_eq!(
        prepares,
        [1, 2, 3].map(RoleId::acceptor),
        "epoch 0's acceptors"
    );
    let old = |slot, round, client| AcceptedEntry {
        slot,
        ballot: Ballot::new(round, 2),
        value: Value::batch(vec![command(client)]),
    };
    let page = |accepted| Message::Promise {
        ballot,
        from_slot: 1,
        accepted,
        next: None,
        chosen_upto: 0,
        trimmed_below: 0,
    };
    let first = p.handle(
        10_000,
        RoleId::acceptor(1),
        page(vec![old(1, 1, 5), old(2, 2, 6)]),
    );
    assert!(
        first.send.is_empty(),
        "one acceptor is not a phase-1 quorum"
    );
    let out = p.handle(10_000, RoleId::acceptor(3), page(vec![old(1, 3, 7)]));
    let decided: Vec<(Slot, Value)> = out
        .send
        .iter()
        .filter_map(|o| match &o.message {
            Message::Decided { slot, value } => Some((*slot, value.clone())),
            _ => None,
        })
        .collect();
    let expected = vec![
        (1, Value::batch(vec![command(7)])),
        (2, Value::batch(vec![command(6)])),
    ];
    assert_eq!(decided, expected, "the highest ballot of each slot");
}

#[test]
fn a_follower_forwards_a_reconfiguration_to_the_leader_which_proposes_it() {
    let mut follower = proposer_on(ProposerState::default());
    let heartbeat = Message::Heartbeat {
        ballot: Ballot::new(9, 2),
        decided_upto: 0,
    };
    follower.handle(0, RoleId::proposer(2), heartbeat);
    let out = follower
        .request_reconfigure(10, next_membership())
        .expect("forwarded");
    let forwarded = Message::Reconfigure {
        next: next_membership(),
    };
    assert_eq!(
        messages(&out),
        vec![(RoleId::proposer(2), forwarded.clone())]
    );
    let wrong = Membership {
        epoch: 3,
        ..next_membership()
    };
    assert!(matches!(
        follower.request_reconfigure(10, wrong),
        Err(ReconfigureError::Invalid(_))
    ));

    let mut leader = proposer_on(ProposerState::default());
    elect(&mut leader, &[1, 2], Vec::new());
    let out = leader.handle(10_000, RoleId::proposer(2), forwarded);
    let stop = accepts(&out);
    assert_eq!(stop.values().next().map(|(v, _)| v), Some(&stop_sign()));
}

#[test]
fn a_follower_whose_registers_wait_finds_the_carry_complete_and_opens_the_others() {
    let mut p = proposer_on(in_epoch_1(3));
    assert!(!p.instances_carried(), "not known after a restart");
    let out = p.propose_instance(10, "r".into(), vec![1]);
    let sent_to = |out: &Output<ProposerWrite>, open: bool| -> BTreeSet<RoleId> {
        let carries = messages(out).into_iter().filter(|(_, m)| {
            matches!(m, Message::InstanceCarry { open: o, votes, .. } if *o == open && votes.is_empty())
        });
        carries.map(|(to, _)| to).collect()
    };
    assert_eq!(sent_to(&out, false), [2, 3, 4].map(RoleId::acceptor).into());
    let answer = Message::InstanceCarried {
        ballot: Ballot::in_epoch(1, 0, ME),
        page: crate::message::CarryPage::default(),
        open: true,
    };
    let out = p.handle(20, RoleId::acceptor(2), answer);
    assert!(p.instances_carried());
    assert_eq!(sent_to(&out, true), [3, 4].map(RoleId::acceptor).into());
}

#[test]
fn a_follower_whose_registers_wait_carries_them_itself() {
    // The leader may have completed the carry and been cut off before its
    // `open` arrived: a follower with a register waiting carries too.
    let mut p = proposer_on(in_epoch_1(3));
    p.propose_instance(10, "r".into(), vec![1]);
    let out = p.tick(10);
    let read_from: BTreeSet<RoleId> = messages(&out)
        .into_iter()
        .filter(|(_, m)| matches!(m, Message::InstanceRead { .. }))
        .map(|(to, _)| to)
        .collect();
    assert_eq!(
        read_from,
        [1, 2, 3].map(RoleId::acceptor).into(),
        "epoch 0's"
    );
    assert!(p.leading_ballot().is_none());
}

fn prepares(out: &Output<ProposerWrite>) -> usize {
    let prepare = |o: &&crate::output::Outgoing| matches!(o.message, Message::Prepare { .. });
    out.send.iter().filter(prepare).count()
}

#[test]
fn a_leader_that_removes_itself_steps_down_and_a_proposer_outside_the_configuration_never_campaigns()
 {
    let mut p = proposer_on(ProposerState::default());
    elect(&mut p, &[1, 2], vec![]);
    let mut without_me = next_membership();
    without_me.proposers = vec![2];
    p.reconfigure(10_000, without_me).expect("leader");
    let out = accepted_by(&mut p, 0..1, &[2, 3]);
    assert_eq!(p.epoch().membership.epoch, 1);
    assert!(!p.may_lead());
    assert_eq!(p.leading_ballot(), None, "it stepped down");
    assert_eq!(prepares(&out), 0, "and does not campaign in epoch 1");
    let told = Message::EpochInfo {
        epoch: p.epoch().clone(),
    };
    assert!(
        messages(&out).contains(&(RoleId::proposer(2), told.clone())),
        "it tells proposer 2, which may lead now, that epoch 1 began"
    );
    report_rounds(&mut p, &[2, 3, 4]);
    let mut told_again = 0;
    for now in (10_000..60_000).step_by(100) {
        let out = p.tick(now);
        assert_eq!(prepares(&out), 0, "never campaigns at {now}");
        told_again += messages(&out).contains(&(RoleId::proposer(2), told.clone())) as usize;
    }
    assert!(told_again > 10, "again while it hears no leader");
    // It still forwards what it is given to the leader it hears.
    let leader = Ballot::in_epoch(1, 1, 2);
    let heartbeat = Message::Heartbeat {
        ballot: leader,
        decided_upto: 1,
    };
    p.handle(60_000, RoleId::proposer(2), heartbeat);
    let out = p.submit(60_000, vec![command(1)]).expect("queued");
    let forwarded = |o: &&crate::output::Outgoing| matches!(o.message, Message::Forward { .. });
    assert_eq!(out.send.iter().filter(forwarded).count(), 1);
    assert_eq!(out.send[0].to, RoleId::proposer(2));
}

#[test]
fn a_configuration_naming_an_unconfigured_proposer_or_learner_is_refused() {
    let mut p = proposer_on(ProposerState::default());
    elect(&mut p, &[1, 2], vec![]);
    let mut unknown_proposer = next_membership();
    unknown_proposer.proposers = vec![1, 7];
    let mut unknown_learner = next_membership();
    unknown_learner.learners = vec![9];
    for next in [unknown_proposer, unknown_learner] {
        assert!(matches!(
            p.reconfigure(10_000, next),
            Err(ReconfigureError::Invalid(_))
        ));
    }
}

/// A leader of epoch 1 (from slot 50) whose configuration counts
/// `learners`, while learners 1 and 2 are configured.
fn leader_counting_learners(learners: Vec<u32>) -> Proposer {
    let mut c = config();
    c.learners = vec![1, 2];
    c.initial_learners = vec![1, 2];
    let mut next = next_membership();
    next.learners = learners;
    let first = Epoch::initial(initial_membership());
    let state = ProposerState {
        max_round: 5,
        epoch: Some(first.next(next, 50)),
        rounds_known_in: 1,
    };
    let mut p = Proposer::new(c, state, 0);
    elect(&mut p, &[2, 3], vec![]);
    p
}

#[test]
fn the_trim_point_waits_only_for_the_learners_of_the_configuration() {
    let trims = |p: &mut Proposer| {
        let snapshotted = Message::Snapshotted { upto: 40 };
        let out = p.handle(10_000, RoleId::learner(1), snapshotted);
        let trim = |o: &crate::output::Outgoing| match o.message {
            Message::Trim { below, .. } => Some(below),
            _ => None,
        };
        out.send.iter().filter_map(trim).max()
    };
    let mut removed = leader_counting_learners(vec![1]);
    assert_eq!(trims(&mut removed), Some(40), "learner 2 was removed");
    let mut counted = leader_counting_learners(vec![1, 2]);
    assert_eq!(trims(&mut counted), None, "learner 2 has no snapshot");
}
