//! The acceptor: the shared shell and nothing else. Its Promise and
//! Accepted replies leave only once the vote is durable, which the shell's
//! pipeline guarantees.

use crate::driver::{Hooks, RoleActor};
use crate::status::{AcceptorStatus, RoleStatus};
use synod_core::Acceptor;

/// The acceptor actor.
pub type AcceptorActor<S> = RoleActor<Acceptor, S, AcceptorHooks>;

/// An acceptor adds nothing to the shell but its status.
#[derive(Debug, Default)]
pub struct AcceptorHooks;

impl Hooks<Acceptor> for AcceptorHooks {
    fn status(&self, core: &Acceptor) -> RoleStatus {
        RoleStatus::Acceptor(AcceptorStatus {
            id: core.id(),
            promised: core.state().promised,
            accepted: core.state().accepted.len(),
        })
    }
}
