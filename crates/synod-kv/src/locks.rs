//! Named locks with fencing tokens, plain or bound to a lease, with a
//! queue of waiting acquirers.
//!
//! A grant's fencing token is the revision of the command (or lease
//! expiry) that granted it. Revisions only grow, and no revision grants a
//! lock twice (a waiter whose lease ended in the same expiry is skipped),
//! so each lock's tokens strictly grow: a resource that remembers the
//! highest token it saw refuses a stale holder.
//!
//! A lease-bound lock is released when its holder unlocks or the lease
//! ends (revoked or expired); then the first waiter whose lease is still
//! live gets it, with a new token. Waiting is only for lease-bound
//! acquirers, so a crashed waiter leaves the queue when its lease does.

use crate::{KvResponse, KvStore, too_large};
use std::collections::VecDeque;

/// A held lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LockRecord {
    pub(crate) owner: String,
    pub(crate) token: u64,
    /// The lease it is bound to (0: none; it lasts until unlocked).
    pub(crate) lease: u64,
    /// Acquirers waiting for it, in order.
    pub(crate) waiters: VecDeque<Waiter>,
}

/// An acquirer in a lock's queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Waiter {
    pub(crate) owner: String,
    pub(crate) lease: u64,
}

impl KvStore {
    /// Take lock `name` for `owner` with no lease (it lasts until unlocked).
    pub(crate) fn lock(&mut self, name: Vec<u8>, owner: String) -> KvResponse {
        match self.locks.get(&name) {
            Some(held) if held.owner == owner => KvResponse::Granted { token: held.token },
            Some(held) => KvResponse::Held {
                owner: held.owner.clone(),
                token: held.token,
            },
            None => self.grant_lock(name, owner, 0, VecDeque::new()),
        }
    }

    /// Take lock `name` for `owner`, bound to `lease`; if it is held and
    /// `wait`, join its queue.
    pub(crate) fn acquire(
        &mut self,
        name: Vec<u8>,
        owner: String,
        lease: u64,
        wait: bool,
    ) -> KvResponse {
        if self.leases.get(lease).is_none() {
            return KvResponse::NoLease { id: lease };
        }
        let max_waiters = self.limits.max_lock_waiters;
        let Some(held) = self.locks.get_mut(&name) else {
            return self.grant_lock(name, owner, lease, VecDeque::new());
        };
        if held.owner == owner {
            return KvResponse::Granted { token: held.token };
        }
        let queued = |position: usize, held: &LockRecord| KvResponse::Queued {
            position: position as u32,
            holder: held.owner.clone(),
            token: held.token,
        };
        if let Some(at) = held.waiters.iter().position(|w| w.owner == owner) {
            return queued(at + 1, held);
        }
        if !wait {
            return KvResponse::Held {
                owner: held.owner.clone(),
                token: held.token,
            };
        }
        if let Some(full) = too_large("lock waiters", held.waiters.len() + 1, max_waiters) {
            return full;
        }
        held.waiters.push_back(Waiter {
            owner: owner.clone(),
            lease,
        });
        let answer = queued(held.waiters.len(), held);
        self.claim(lease, name, owner);
        answer
    }

    /// Release lock `name` if `owner` holds it, or leave its queue if
    /// `owner` waits for it.
    pub(crate) fn unlock(&mut self, name: &[u8], owner: &str) -> KvResponse {
        let Some(held) = self.locks.get_mut(name) else {
            return KvResponse::NotOwner { owner: None };
        };
        let lease = if held.owner == owner {
            let lease = held.lease;
            self.release(name);
            lease
        } else if let Some(at) = held.waiters.iter().position(|w| w.owner == owner) {
            held.waiters.remove(at).expect("found").lease
        } else {
            return KvResponse::NotOwner {
                owner: Some(held.owner.clone()),
            };
        };
        if let Some(lease) = self.leases.get_mut(lease) {
            lease.locks.remove(&(name.to_vec(), owner.to_owned()));
        }
        KvResponse::Unlocked
    }

    /// Who holds lock `name`, with what, and who waits.
    pub(crate) fn lock_info(&self, name: &[u8]) -> KvResponse {
        let held = self.locks.get(name);
        KvResponse::LockState {
            holder: held.map(|h| h.owner.clone()),
            token: held.map_or(0, |h| h.token),
            lease: held.map_or(0, |h| h.lease),
            waiters: held.map_or_else(Vec::new, |h| {
                h.waiters.iter().map(|w| w.owner.clone()).collect()
            }),
        }
    }

    /// `owner`'s claim on lock `name` through a lease that ended: release
    /// the lock if it holds it, or leave the queue.
    pub(crate) fn drop_claim(&mut self, name: &[u8], owner: &str, lease: u64) {
        let Some(held) = self.locks.get_mut(name) else {
            return;
        };
        if held.owner == owner && held.lease == lease {
            self.release(name);
        } else {
            held.waiters
                .retain(|w| !(w.owner == owner && w.lease == lease));
        }
    }

    /// The holder of `name` is gone: grant it to the first waiter whose
    /// lease is live (one that ended in this same expiry is skipped: its
    /// claim goes with its lease), or free it.
    fn release(&mut self, name: &[u8]) {
        let Some(record) = self.locks.remove(name) else {
            return;
        };
        let mut waiters = record.waiters;
        while let Some(next) = waiters.pop_front() {
            let live = self
                .leases
                .get(next.lease)
                .is_some_and(|lease| self.leases.remaining(lease) > 0);
            if live {
                self.grant_lock(name.to_vec(), next.owner, next.lease, waiters);
                return;
            }
        }
    }

    /// Give lock `name` to `owner` now (the token is this revision).
    fn grant_lock(
        &mut self,
        name: Vec<u8>,
        owner: String,
        lease: u64,
        waiters: VecDeque<Waiter>,
    ) -> KvResponse {
        let token = self.applied;
        if lease != 0 {
            self.claim(lease, name.clone(), owner.clone());
        }
        let record = LockRecord {
            owner,
            token,
            lease,
            waiters,
        };
        self.locks.insert(name, record);
        KvResponse::Granted { token }
    }

    /// Record on `lease` that `owner` holds or waits for lock `name`.
    pub(crate) fn claim(&mut self, lease: u64, name: Vec<u8>, owner: String) {
        if let Some(lease) = self.leases.get_mut(lease) {
            lease.locks.insert((name, owner));
        }
    }
}
