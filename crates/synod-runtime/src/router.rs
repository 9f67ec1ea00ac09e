//! Routing hides placement: roles hand every outgoing message to the
//! router, which delivers it to a local role actor or to the peer link of
//! the node hosting the destination. Messages from peers come in through
//! the listener and are checked against the placement before delivery.

use actix::prelude::*;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use synod_core::{Message, RoleId};
use synod_transport::{Inbound, OutboundBatch, PeerLink};

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

/// The per-node router.
pub struct Router {
    node: Arc<str>,
    sent: Rc<MessageCounts>,
    locals: HashMap<RoleId, Recipient<Inbound<Message>>>,
    placement: HashMap<RoleId, Arc<str>>,
    links: HashMap<Arc<str>, Addr<PeerLink<Message>>>,
}

impl Router {
    /// A router for `node`, knowing every role's node and the links to the
    /// other nodes.
    pub fn new(
        node: &str,
        placement: HashMap<RoleId, Arc<str>>,
        links: HashMap<Arc<str>, Addr<PeerLink<Message>>>,
    ) -> Self {
        Self {
            node: node.into(),
            sent: Rc::default(),
            locals: HashMap::new(),
            placement,
            links,
        }
    }
}

impl Router {
    /// What this router counts of the messages it routes.
    pub(crate) fn sent(&self) -> Rc<MessageCounts> {
        Rc::clone(&self.sent)
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
        let mut remote: HashMap<Arc<str>, Vec<_>> = HashMap::new();
        for outbound in batch {
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
        if let Some(local) = self.locals.get(&inbound.to) {
            local.do_send(inbound);
        }
    }
}
