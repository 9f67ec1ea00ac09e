//! The proposer: the shared shell plus client intake. Commands arrive as
//! [`Submit`] (answered `Err(Busy)` when the queue is full, so callers back
//! off), single-decree proposals as [`ProposeInstance`]. Every new round
//! is persisted before the Prepare that carries it leaves.

use crate::driver::{NoHooks, RoleActor};
use actix::prelude::*;
use synod_core::{Busy, Command, Proposer};
use synod_storage::Store;

/// The proposer actor: the shell with no hooks, plus the intake handlers below.
pub type ProposerActor<S> = RoleActor<Proposer, S, NoHooks>;

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
