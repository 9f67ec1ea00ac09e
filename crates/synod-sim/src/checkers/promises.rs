//! No acceptor promises or accepts below its promise.
//!
//! The checker keeps, per acceptor, the highest ballot it ever promised or
//! accepted, across restarts: durable memory is part of the property.
//! Replies are judged as they leave, so a forgetful acceptor is caught the
//! moment it votes for a ballot it had already ruled out; and when an
//! acceptor restarts, the state it loads must hold every promise it sent
//! (a reply that left before its write was durable, then a crash, is
//! caught there even if no lower ballot ever reaches it).

use super::{Check, Violation};
use std::collections::BTreeMap;
use synod_core::{AcceptorState, Ballot, Message, RoleId};

/// Highest ballot each acceptor has committed to, log and per instance.
#[derive(Debug, Default)]
pub struct PromiseOrder {
    log: BTreeMap<RoleId, Ballot>,
    instances: BTreeMap<(RoleId, String), Ballot>,
}

impl PromiseOrder {
    /// `acceptor` sent `message`.
    pub fn sent(&mut self, acceptor: RoleId, message: &Message) -> Check {
        match message {
            Message::Promise { ballot, .. } => self.vote(acceptor, None, *ballot, "promised"),
            Message::Accepted { ballot, .. } => self.vote(acceptor, None, *ballot, "accepted"),
            Message::InstancePromise { name, ballot, .. } => {
                self.vote(acceptor, Some(name), *ballot, "promised")
            }
            Message::InstanceAccepted { name, ballot } => {
                self.vote(acceptor, Some(name), *ballot, "accepted")
            }
            _ => Ok(()),
        }
    }

    /// `acceptor` restarts from `durable`: it must remember at least the
    /// highest ballot of every vote it sent.
    pub fn restarted(&self, acceptor: RoleId, durable: &AcceptorState) -> Check {
        let forgot = |scope: String, sent: Ballot, kept: Ballot| {
            Err(Violation::new(
                "promise order",
                format!(
                    "{acceptor} restarted remembering {kept} for {scope}, but had sent a vote in {sent}"
                ),
            ))
        };
        if let Some(sent) = self.log.get(&acceptor).filter(|b| **b > durable.promised) {
            return forgot("log".into(), *sent, durable.promised);
        }
        for ((who, name), sent) in &self.instances {
            let kept = durable
                .instances
                .get(name)
                .map_or(Ballot::ZERO, |v| v.promised);
            if *who == acceptor && *sent > kept {
                return forgot(format!("instance {name:?}"), *sent, kept);
            }
        }
        Ok(())
    }

    fn vote(
        &mut self,
        acceptor: RoleId,
        name: Option<&String>,
        ballot: Ballot,
        verb: &str,
    ) -> Check {
        let highest = match name {
            None => self.log.entry(acceptor).or_default(),
            Some(name) => self.instances.entry((acceptor, name.clone())).or_default(),
        };
        // A repeated promise for the same ballot is fine; accepting in the
        // promised ballot is fine; anything lower breaks the promise.
        if ballot < *highest {
            let scope = name.map_or_else(|| "log".to_owned(), |n| format!("instance {n:?}"));
            return Err(Violation::new(
                "promise order",
                format!("{acceptor} {verb} {ballot} for {scope} after promising {highest}"),
            ));
        }
        *highest = ballot;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: RoleId = RoleId::acceptor(1);

    #[test]
    fn a_restart_that_forgot_a_sent_promise_is_caught() {
        let mut p = PromiseOrder::default();
        let promise = |round| Message::Promise {
            ballot: Ballot::new(round, 1),
            accepted: vec![],
            from_slot: 0,
            next: None,
            chosen_upto: 0,
            trimmed_below: 0,
        };
        p.sent(A, &promise(3)).unwrap();
        let mut durable = AcceptorState {
            promised: Ballot::new(3, 1),
            ..AcceptorState::default()
        };
        assert!(p.restarted(A, &durable).is_ok(), "remembered");
        durable.promised = Ballot::new(2, 1);
        let caught = p.restarted(A, &durable).unwrap_err();
        assert_eq!(caught.property, "promise order");
        assert!(
            p.restarted(RoleId::acceptor(2), &durable).is_ok(),
            "another acceptor"
        );
    }

    #[test]
    fn rising_and_repeated_ballots_pass() {
        let mut p = PromiseOrder::default();
        p.sent(
            A,
            &Message::Promise {
                ballot: Ballot::new(1, 1),
                accepted: vec![],
                from_slot: 0,
                next: None,
                chosen_upto: 0,
                trimmed_below: 0,
            },
        )
        .unwrap();
        p.sent(
            A,
            &Message::Accepted {
                ballot: Ballot::new(1, 1),
                slot: 0,
            },
        )
        .unwrap();
        p.sent(
            A,
            &Message::Promise {
                ballot: Ballot::new(2, 1),
                accepted: vec![],
                from_slot: 0,
                next: None,
                chosen_upto: 0,
                trimmed_below: 0,
            },
        )
        .unwrap();
        p.sent(
            A,
            &Message::Promise {
                ballot: Ballot::new(2, 1),
                accepted: vec![],
                from_slot: 0,
                next: None,
                chosen_upto: 0,
                trimmed_below: 0,
            },
        )
        .unwrap();
    }

    #[test]
    fn negative_control_accept_below_promise_is_caught() {
        let mut p = PromiseOrder::default();
        p.sent(
            A,
            &Message::Promise {
                ballot: Ballot::new(5, 2),
                accepted: vec![],
                from_slot: 0,
                next: None,
                chosen_upto: 0,
                trimmed_below: 0,
            },
        )
        .unwrap();
        assert!(
            p.sent(
                A,
                &Message::Accepted {
                    ballot: Ballot::new(5, 1),
                    slot: 0
                }
            )
            .is_err()
        );
    }

    #[test]
    fn negative_control_instance_promise_below_promise_is_caught() {
        let mut p = PromiseOrder::default();
        let name = "x".to_owned();
        p.sent(
            A,
            &Message::InstancePromise {
                name: name.clone(),
                ballot: Ballot::new(3, 1),
                accepted: None,
            },
        )
        .unwrap();
        let low = Message::InstancePromise {
            name,
            ballot: Ballot::new(2, 9),
            accepted: None,
        };
        assert!(p.sent(A, &low).is_err());
    }
}
