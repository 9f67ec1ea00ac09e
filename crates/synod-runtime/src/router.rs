//! Routing hides placement: roles hand every outgoing message to the
//! router, which delivers it to a local role actor or to the peer link of
//! the node hosting the destination. Messages from peers come in through
//! the listener and are checked against the placement before delivery.
//!
//! The router also follows the placement the log decides (see
//! `placement.rs`): every `EpochInfo` it carries, either way, names a
//! configuration, and a newer one may move roles. The router applies it
//! before it routes anything else: it keeps the moves (synced), routes to
//! the new nodes, stops a local role that moved away (so nothing it sends
//! in the new configuration leaves this node) and starts one that moved
//! here.

use actix::prelude::*;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use synod_core::{Membership, Message, RoleId};
use synod_transport::{Inbound, OutboundBatch, PeerLink};

use crate::placement::MovedRoles;

/// Register a local role actor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RegisterRole {
    /// The role instance.
    pub role: RoleId,
    /// Where its messages go.
    pub recipient: Recipient<Inbound<Message>>,
}

/// Stop the router.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopRouter;

/// Messages the node's roles sent, by kind (`accept`, `nack`, ...): a
/// table bounded by the number of message kinds.
#[derive(Debug, Default)]
pub(crate) struct MessageCounts(RefCell<BTreeMap<&'static str, u64>>);

impl MessageCounts {
    fn count(&self, message: &Message) {
        *self.0.borrow_mut().entry(message.kind()).or_default() += 1;
    }

    /// Every kind sent so far, with its count.
    pub(crate) fn get(&self) -> Vec<(&'static str, u64)> {
        self.0.borrow().iter().map(|(k, v)| (*k, *v)).collect()
    }
}

/// What the node does when the placement it follows moves its roles.
pub(crate) trait RoleLifecycle {
    /// Start `role` on this node (its store created if it has none);
    /// where its messages go.
    fn start(&self, role: RoleId) -> Result<Recipient<Inbound<Message>>, String>;
    /// Stop `role` on this node: it moved to another.
    fn stop(&self, role: RoleId);
}

/// Where the node installs its [`RoleLifecycle`] once its roles run (the
/// router starts before them).
pub(crate) type LifecycleSlot = Rc<RefCell<Option<Rc<dyn RoleLifecycle>>>>;

/// The placement a router follows: the config file's, with the moves of
/// the newest configuration it heard of.
pub struct FollowedPlacement {
    /// Every role's node in the config file.
    pub seed: BTreeMap<RoleId, String>,
    /// The moves followed so far (loaded from `data_dir` at start).
    pub moves: MovedRoles,
    /// Where the moves are kept (none: not kept, for routers in tests).
    pub data_dir: Option<PathBuf>,
}

impl FollowedPlacement {
    /// Every role's node once the moves are applied.
    fn current(&self) -> HashMap<RoleId, Arc<str>> {
        let mut placement = self.seed.clone();
        crate::placement::apply_moves(&mut placement, &self.moves.moved);
        let shared = |(role, node): (RoleId, String)| (role, Arc::from(node.as_str()));
        placement.into_iter().map(shared).collect()
    }
}

/// The per-node router.
pub struct Router {
    node: Arc<str>,
    sent: Rc<MessageCounts>,
    locals: HashMap<RoleId, Recipient<Inbound<Message>>>,
    followed: FollowedPlacement,
    placement: HashMap<RoleId, Arc<str>>,
    lifecycle: LifecycleSlot,
    /// Local roles that moved away before the lifecycle was installed:
    /// stopped once it is.
    to_stop: Vec<RoleId>,
    links: HashMap<Arc<str>, Addr<PeerLink<Message>>>,
}

impl Router {
    /// A router for `node`, following `placement`, with the links to the
    /// other nodes.
    pub fn new(
        node: &str,
        placement: FollowedPlacement,
        links: HashMap<Arc<str>, Addr<PeerLink<Message>>>,
    ) -> Self {
        Self {
            node: node.into(),
            sent: Rc::default(),
            locals: HashMap::new(),
            placement: placement.current(),
            followed: placement,
            lifecycle: LifecycleSlot::default(),
            to_stop: Vec::new(),
            links,
        }
    }
}

impl Router {
    /// What this router counts of the messages it routes.
    pub(crate) fn sent(&self) -> Rc<MessageCounts> {
        Rc::clone(&self.sent)
    }

    /// Where the node installs the lifecycle this router drives.
    pub(crate) fn lifecycle(&self) -> LifecycleSlot {
        Rc::clone(&self.lifecycle)
    }

    /// Follow the newest configuration `message` names, if it is one.
    fn follow_announcement(&mut self, message: &Message) {
        if let Message::EpochInfo { epoch } = message {
            self.follow(&epoch.membership);
        }
    }

    /// Follow `membership` if it is newer than the one followed: keep its
    /// moves, then route by them, stop the local roles that moved away and
    /// start those that moved here.
    fn follow(&mut self, membership: &Membership) {
        if membership.epoch <= self.followed.moves.epoch {
            return;
        }
        let moves = MovedRoles::of(membership);
        let changed = moves.moved != self.followed.moves.moved;
        if changed
            && let Some(dir) = &self.followed.data_dir
            && let Err(e) = moves.save(dir, &self.node)
        {
            // Routing by the new placement is still right; only a restart
            // before the next announcement would start from the older one
            // (a moved-away proposer then finds its new configuration in
            // its own store, see `node.rs`).
            let path = MovedRoles::path(dir, &self.node);
            tracing::error!(path = %path.display(), error = %e, "cannot keep the placement moves");
        }
        self.followed.moves = moves;
        if !changed {
            return;
        }
        self.placement = self.followed.current();
        tracing::info!(epoch = membership.epoch, moved = ?membership.moved, "following the placement of a new configuration");
        self.stop_roles_moved_away();
        self.start_roles_moved_here();
    }

    fn is_here(&self, role: &RoleId) -> bool {
        self.placement
            .get(role)
            .is_some_and(|node| *node == self.node)
    }

    fn stop_roles_moved_away(&mut self) {
        let gone: Vec<RoleId> = self
            .locals
            .keys()
            .filter(|role| !self.is_here(role))
            .copied()
            .collect();
        let lifecycle = self.lifecycle.borrow().clone();
        for role in gone {
            self.locals.remove(&role);
            tracing::info!(%role, to = ?self.placement.get(&role), "{role} moved to another node: stopped here");
            match &lifecycle {
                Some(lifecycle) => lifecycle.stop(role),
                None => self.to_stop.push(role),
            }
        }
    }

    fn start_roles_moved_here(&mut self) {
        let Some(lifecycle) = self.lifecycle.borrow().clone() else {
            return;
        };
        let arrived: Vec<RoleId> = self
            .placement
            .keys()
            .filter(|role| self.is_here(role) && !self.locals.contains_key(role))
            .copied()
            .collect();
        for role in arrived {
            match lifecycle.start(role) {
                Ok(recipient) => {
                    tracing::info!(%role, "{role} moved to this node: started");
                    self.locals.insert(role, recipient);
                }
                Err(e) => {
                    tracing::error!(%role, error = %e, "{role} moved to this node but cannot start")
                }
            }
        }
    }
}

/// Follow `membership`'s placement now (the node found a newer
/// configuration in a local store at start).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Follow(pub(crate) Membership);

impl Handler<Follow> for Router {
    type Result = ();
    fn handle(&mut self, Follow(membership): Follow, _: &mut Context<Self>) {
        self.follow(&membership);
    }
}

/// Stop the local roles that moved away and start the roles placed here
/// that do not run yet (once the node has installed its lifecycle).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StartPlacedRoles;

impl Handler<StartPlacedRoles> for Router {
    type Result = ();
    fn handle(&mut self, _: StartPlacedRoles, _: &mut Context<Self>) {
        if let Some(lifecycle) = self.lifecycle.borrow().clone() {
            for role in self.to_stop.drain(..) {
                lifecycle.stop(role);
            }
        }
        self.start_roles_moved_here();
    }
}

impl Actor for Router {
    type Context = Context<Self>;
}

impl Handler<RegisterRole> for Router {
    type Result = ();
    fn handle(&mut self, register: RegisterRole, _: &mut Context<Self>) {
        self.locals.insert(register.role, register.recipient);
    }
}

impl Handler<StopRouter> for Router {
    type Result = ();
    fn handle(&mut self, _: StopRouter, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<OutboundBatch<Message>> for Router {
    type Result = ();

    fn handle(&mut self, OutboundBatch(batch): OutboundBatch<Message>, _: &mut Context<Self>) {
        for outbound in &batch {
            self.follow_announcement(&outbound.message);
        }
        let mut remote: HashMap<Arc<str>, Vec<_>> = HashMap::new();
        for outbound in batch {
            let announcement = matches!(outbound.message, Message::EpochInfo { .. });
            if !self.is_here(&outbound.from) && !announcement {
                // Its role moved away in this very batch and is stopped:
                // only its announcements of the new configuration leave
                // (so the role's new node hears of it at once).
                continue;
            }
            self.sent.count(&outbound.message);
            if let Some(local) = self.locals.get(&outbound.to) {
                let inbound = Inbound {
                    node: Arc::clone(&self.node),
                    from: outbound.from,
                    to: outbound.to,
                    message: outbound.message,
                };
                local.do_send(inbound);
            } else if let Some(node) = self.placement.get(&outbound.to) {
                remote.entry(Arc::clone(node)).or_default().push(outbound);
            }
            // else: a role on this node that is not running (stopped): lost,
            // as on a crashed node.
        }
        for (node, batch) in remote {
            if let Some(link) = self.links.get(&node) {
                link.do_send(OutboundBatch(batch));
            }
        }
    }
}

impl Handler<Inbound<Message>> for Router {
    type Result = ();

    fn handle(&mut self, inbound: Inbound<Message>, _: &mut Context<Self>) {
        let placed_on = self.placement.get(&inbound.from);
        if placed_on.is_none_or(|node| **node != *inbound.node) {
            tracing::warn!(node = &*inbound.node, from = %inbound.from, "message from a role not placed on its node dropped");
            return;
        }
        self.follow_announcement(&inbound.message);
        if let Some(local) = self.locals.get(&inbound.to) {
            local.do_send(inbound);
        }
    }
}
