//! Single-decree Paxos (the Synod protocol) for named instances.
//!
//! Any number of proposers may propose different values for one instance
//! at once. Each runs both phases with its own ballot; a proposer that sees
//! a value already accepted adopts the highest-ballot one, so exactly one
//! value is chosen. The deciding proposer announces it to every learner
//! until each has acknowledged it.

use super::{Proposer, ProposerWrite};
use crate::message::{AcceptedRegister, Message};
use crate::output::Output;
use crate::types::{Ballot, InstanceName, Millis, RoleId};
use std::collections::{BTreeMap, BTreeSet};

/// One instance this proposer is driving.
#[derive(Clone, Debug)]
pub(super) struct Register {
    /// What this proposer asked for (used only if nothing was accepted yet).
    proposal: Vec<u8>,
    ballot: Ballot,
    stage: Stage,
    /// When to retry (a new ballot) or resend announcements.
    pub(super) retry_at: Millis,
}

#[derive(Clone, Debug)]
enum Stage {
    Preparing {
        promises: BTreeMap<u32, Option<AcceptedRegister>>,
    },
    Accepting {
        value: Vec<u8>,
        accepted_by: BTreeSet<u32>,
    },
    Backoff,
    Announcing {
        value: Vec<u8>,
        learned_by: BTreeSet<u32>,
    },
}

impl Proposer {
    /// Propose `value` for instance `name`. The instance decides exactly one
    /// of the values proposed for it; learners deliver that value.
    pub fn propose_instance(
        &mut self,
        now: Millis,
        name: InstanceName,
        value: Vec<u8>,
    ) -> Output<ProposerWrite> {
        let mut out = Output::new();
        if self.registers.contains_key(&name) {
            return out; // already driving this instance
        }
        let register = Register {
            proposal: value,
            ballot: Ballot::ZERO,
            stage: Stage::Backoff,
            retry_at: now,
        };
        self.registers.insert(name.clone(), register);
        self.restart_register(now, &name, &mut out);
        out
    }

    /// A fresh ballot for `name` and a new phase 1.
    fn restart_register(&mut self, now: Millis, name: &str, out: &mut Output<ProposerWrite>) {
        if !self.may_take_ballot(now, out) {
            let retry_at = now + self.config.retransmit_interval;
            if let Some(register) = self.registers.get_mut(name) {
                register.retry_at = retry_at;
            }
            return;
        }
        let ballot = self.next_ballot(out);
        let timeout = self.register_timeout();
        let Some(register) = self.registers.get_mut(name) else {
            return;
        };
        register.ballot = ballot;
        register.stage = Stage::Preparing {
            promises: BTreeMap::new(),
        };
        register.retry_at = now + timeout;
        let prepare = Message::InstancePrepare {
            name: name.to_owned(),
            ballot,
        };
        out.broadcast(self.acceptor_ids(), &prepare);
        self.probe_carry_if_unknown(out);
    }

    fn register_timeout(&mut self) -> Millis {
        let base = self.config.retransmit_interval;
        self.rng.between(base, 3 * base)
    }

    pub(super) fn handle_instance_promise(
        &mut self,
        now: Millis,
        from: RoleId,
        name: InstanceName,
        ballot: Ballot,
        accepted: Option<AcceptedRegister>,
        out: &mut Output<ProposerWrite>,
    ) {
        let Some(register) = self.registers.get_mut(&name) else {
            return;
        };
        let Stage::Preparing { promises } = &mut register.stage else {
            return;
        };
        if register.ballot != ballot {
            return;
        }
        promises.insert(from.index, accepted);
        if !self
            .epoch
            .membership
            .phase1(&promises.keys().copied().collect())
        {
            return;
        }
        let highest = promises.values().flatten().max_by_key(|a| a.ballot);
        let value = highest.map_or_else(|| register.proposal.clone(), |a| a.value.clone());
        register.stage = Stage::Accepting {
            value: value.clone(),
            accepted_by: BTreeSet::new(),
        };
        register.retry_at = now + 3 * self.config.retransmit_interval;
        let accept = Message::InstanceAccept {
            name,
            ballot,
            value,
        };
        out.broadcast(self.acceptor_ids(), &accept);
    }

    pub(super) fn handle_instance_accepted(
        &mut self,
        now: Millis,
        from: RoleId,
        name: InstanceName,
        ballot: Ballot,
        out: &mut Output<ProposerWrite>,
    ) {
        let Some(register) = self.registers.get_mut(&name) else {
            return;
        };
        let Stage::Accepting { value, accepted_by } = &mut register.stage else {
            return;
        };
        if register.ballot != ballot {
            return;
        }
        accepted_by.insert(from.index);
        if !self.epoch.membership.phase2(accepted_by) {
            return;
        }
        let value = std::mem::take(value);
        register.stage = Stage::Announcing {
            value: value.clone(),
            learned_by: BTreeSet::new(),
        };
        register.retry_at = now + self.config.retransmit_interval;
        out.broadcast(
            self.learner_ids(),
            &Message::InstanceDecided { name, value },
        );
    }

    pub(super) fn handle_instance_nack(
        &mut self,
        now: Millis,
        name: InstanceName,
        ballot: Ballot,
        promised: Ballot,
    ) {
        self.highest_seen = self.highest_seen.max(promised);
        let backoff = self.rng.between(1, self.config.backoff_max);
        let Some(register) = self.registers.get_mut(&name) else {
            return;
        };
        let active = matches!(
            register.stage,
            Stage::Preparing { .. } | Stage::Accepting { .. }
        );
        if active && register.ballot == ballot {
            register.stage = Stage::Backoff;
            register.retry_at = now + backoff;
        }
    }

    pub(super) fn handle_instance_learned(&mut self, from: RoleId, name: InstanceName) {
        let learners = self.config.learners.len();
        let Some(register) = self.registers.get_mut(&name) else {
            return;
        };
        let Stage::Announcing { learned_by, .. } = &mut register.stage else {
            return;
        };
        learned_by.insert(from.index);
        if learned_by.len() >= learners {
            self.registers.remove(&name);
        }
    }

    /// Retry stalled instances with a new ballot; resend announcements that
    /// some learner has not acknowledged.
    pub(super) fn tick_registers(&mut self, now: Millis, out: &mut Output<ProposerWrite>) {
        let due: Vec<InstanceName> = self
            .registers
            .iter()
            .filter(|(_, r)| now >= r.retry_at)
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            let register = self.registers.get_mut(&name).expect("listed above");
            if let Stage::Announcing { value, learned_by } = &register.stage {
                register.retry_at = now + self.config.retransmit_interval;
                let decided = Message::InstanceDecided {
                    name: name.clone(),
                    value: value.clone(),
                };
                let pending: Vec<RoleId> = self
                    .config
                    .learners
                    .iter()
                    .filter(|l| !learned_by.contains(l))
                    .map(|l| RoleId::learner(*l))
                    .collect();
                out.broadcast(pending, &decided);
            } else {
                self.restart_register(now, &name, out);
            }
        }
    }
}
