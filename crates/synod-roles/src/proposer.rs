//! The proposer: the shared shell plus client intake. Commands arrive as
//! [`Submit`] (answered `Err(Busy)` when the queue is full, so callers back
//! off), single-decree proposals as [`ProposeInstance`], configuration
//! changes as [`Reconfigure`]. Every new round
//! is persisted before the Prepare that carries it leaves.

use crate::driver::{Hooks, RoleActor};
use crate::status::{Report, RoleStatus};
use actix::prelude::*;
use synod_core::{Ballot, Busy, Command, Membership, Proposer, ReconfigureError};
use synod_storage::Store;

/// The proposer actor: the shell with [`ProposerHooks`], plus the intake
/// handlers below.
pub type ProposerActor<S> = RoleActor<Proposer, S, ProposerHooks>;

/// What the proposer adds to the shell: a log line whenever it starts or
/// stops leading, or comes to follow another leader (the sans-IO core
/// cannot log).
#[derive(Debug, Default)]
pub struct ProposerHooks {
    leading: Option<Ballot>,
    leader: Option<u32>,
    elections_won: u64,
    leader_changes: u64,
}

impl Hooks<Proposer> for ProposerHooks {
    type Finished = ();

    fn status(&self, core: &Proposer) -> RoleStatus {
        let mut report = core.report();
        if let RoleStatus::Proposer(status) = &mut report {
            status.elections_won = self.elections_won;
            status.leader_changes = self.leader_changes;
        }
        report
    }

    fn stepped(&mut self, core: &Proposer) {
        let (leading, leader) = (core.leading_ballot(), core.known_leader());
        self.elections_won += u64::from(leading.is_some() && self.leading.is_none());
        self.leader_changes += u64::from(leader != self.leader && leader.is_some());
        if leading != self.leading {
            match leading {
                Some(ballot) => tracing::info!(
                    proposer = %core.id(),
                    round = ballot.round,
                    "elected: leading"
                ),
                None => tracing::warn!(proposer = %core.id(), "stopped leading"),
            }
        } else if leader != self.leader && leading.is_none() {
            match leader {
                Some(leader) => tracing::info!(proposer = %core.id(), leader, "follows a leader"),
                None => tracing::info!(proposer = %core.id(), "knows no leader"),
            }
        }
        (self.leading, self.leader) = (leading, leader);
    }
}

/// Client commands for the log.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), Busy>")]
pub struct Submit(pub Vec<Command>);

/// Propose a value for a single-decree instance.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ProposeInstance {
    /// The instance.
    pub name: String,
    /// The proposed value.
    pub value: Vec<u8>,
}

/// An operator asks for the next configuration (`synod member`): the
/// leader proposes it, a follower forwards it to the leader it knows.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ReconfigureError>")]
pub struct Reconfigure(pub Membership);

impl<S: Store> Handler<Reconfigure> for ProposerActor<S> {
    type Result = Result<(), ReconfigureError>;

    fn handle(
        &mut self,
        Reconfigure(next): Reconfigure,
        ctx: &mut Context<Self>,
    ) -> Result<(), ReconfigureError> {
        let epoch = next.epoch;
        let out = self.core.request_reconfigure(self.now(), next)?;
        tracing::info!(proposer = %self.core.id(), epoch, "configuration change asked for");
        self.emit(out, ctx);
        Ok(())
    }
}

impl<S: Store> Handler<Submit> for ProposerActor<S> {
    type Result = Result<(), Busy>;

    fn handle(&mut self, Submit(commands): Submit, ctx: &mut Context<Self>) -> Result<(), Busy> {
        let out = self.core.submit(self.now(), commands)?;
        self.emit(out, ctx);
        Ok(())
    }
}

impl<S: Store> Handler<ProposeInstance> for ProposerActor<S> {
    type Result = ();

    fn handle(&mut self, propose: ProposeInstance, ctx: &mut Context<Self>) {
        let out = self
            .core
            .propose_instance(self.now(), propose.name, propose.value);
        self.emit(out, ctx);
    }
}
