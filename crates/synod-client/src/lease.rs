//! Leases and lease-bound locks, client side.
//!
//! [`Client::lock_leased`] is the whole recipe a lock holder needs: grant a
//! lease, keep it alive in the background (every third of its TTL),
//! queue for the lock, wait for its turn, and hand back a [`LeasedLock`]
//! with the fencing token. If the lease is lost (the holder was cut off
//! for longer than the TTL), [`LeasedLock::lost`] resolves: the holder
//! must stop using the resource, and the token it has is already stale.

use crate::{Client, ClientError, unexpected};
use std::time::{Duration, Instant};
use synod_kv::{KvCommand, KvResponse};
use tokio::sync::watch;

/// A live lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Its id.
    pub id: u64,
    /// Its time to live.
    pub ttl: Duration,
    /// What is left of it, by the log's clock.
    pub remaining: Duration,
}

/// What [`Client::acquire`] got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// The lock is yours, with this fencing token.
    Granted {
        /// The fencing token.
        token: u64,
    },
    /// The lock is held; you wait at `position` (1: next).
    Queued {
        /// Place in the queue, from 1.
        position: u32,
        /// The holder now.
        holder: String,
        /// The holder's fencing token.
        token: u64,
    },
}

/// A lock's state ([`Client::lock_info`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockState {
    /// The holder (`None`: free).
    pub holder: Option<String>,
    /// The holder's fencing token (0: free).
    pub token: u64,
    /// The holder's lease (0: none).
    pub lease: u64,
    /// Who waits, in order.
    pub waiters: Vec<String>,
}

/// How often a waiting acquirer looks whether its turn came.
const TURN_POLL: Duration = Duration::from_millis(50);

fn lease_of(response: KvResponse) -> Result<Lease, ClientError> {
    match response {
        KvResponse::Lease {
            id,
            ttl_ms,
            remaining_ms,
        } => Ok(Lease {
            id,
            ttl: Duration::from_millis(ttl_ms),
            remaining: Duration::from_millis(remaining_ms),
        }),
        KvResponse::NoLease { id } => Err(ClientError::NoLease { id }),
        other => Err(unexpected(other)),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Client {
    /// Start a lease of `ttl` (at least 1 ms).
    pub async fn grant(&mut self, ttl: Duration) -> Result<Lease, ClientError> {
        let ttl_ms = millis(ttl);
        lease_of(self.kv(KvCommand::Grant { ttl_ms }).await?)
    }

    /// Restart lease `id`'s TTL. [`ClientError::NoLease`] if it ended.
    pub async fn keep_alive(&mut self, id: u64) -> Result<Lease, ClientError> {
        lease_of(self.kv(KvCommand::KeepAlive { lease: id }).await?)
    }

    /// End lease `id` now: its keys are deleted and its locks released.
    pub async fn revoke(&mut self, id: u64) -> Result<(), ClientError> {
        match self.kv(KvCommand::Revoke { lease: id }).await? {
            KvResponse::Done => Ok(()),
            other => lease_of(other).map(drop),
        }
    }

    /// Lease `id`'s TTL and what is left of it (through the log).
    pub async fn lease_info(&mut self, id: u64) -> Result<Lease, ClientError> {
        lease_of(self.kv(KvCommand::LeaseInfo { lease: id }).await?)
    }

    /// Set `key` to `value`, deleted when lease `lease` ends.
    pub async fn put_leased(
        &mut self,
        key: &[u8],
        value: &[u8],
        lease: u64,
    ) -> Result<(), ClientError> {
        let command = KvCommand::PutLeased {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
        };
        match self.kv(command).await? {
            KvResponse::Done => Ok(()),
            other => lease_of(other).map(drop),
        }
    }

    /// Take lock `name` for `owner`, bound to lease `lease`; if it is held
    /// and `wait`, join its queue (else [`ClientError::Held`]).
    pub async fn acquire(
        &mut self,
        name: &[u8],
        owner: &str,
        lease: u64,
        wait: bool,
    ) -> Result<Acquired, ClientError> {
        let command = KvCommand::Acquire {
            name: name.to_vec(),
            owner: owner.to_owned(),
            lease,
            wait,
        };
        match self.kv(command).await? {
            KvResponse::Granted { token } => Ok(Acquired::Granted { token }),
            KvResponse::Queued {
                position,
                holder,
                token,
            } => Ok(Acquired::Queued {
                position,
                holder,
                token,
            }),
            KvResponse::NoLease { id } => Err(ClientError::NoLease { id }),
            other => Err(unexpected(other)),
        }
    }

    /// Lock `name`'s holder and queue, as this node's learner has applied
    /// them (serializable: outside the log).
    pub async fn lock_info(&mut self, name: &[u8]) -> Result<LockState, ClientError> {
        let ask = KvCommand::LockInfo {
            name: name.to_vec(),
        };
        match self.kv_query(ask).await? {
            KvResponse::LockState {
                holder,
                token,
                lease,
                waiters,
            } => Ok(LockState {
                holder,
                token,
                lease,
                waiters,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// Take lock `name` for `owner` on a new lease of `ttl`, kept alive in
    /// the background; with `wait`, queue for it (for at most `wait`) if
    /// it is held. The lease ends when the [`LeasedLock`] is released or
    /// dropped, or when its holder stops keeping it alive for `ttl`.
    pub async fn lock_leased(
        &mut self,
        name: &[u8],
        owner: &str,
        ttl: Duration,
        wait: Option<Duration>,
    ) -> Result<LeasedLock, ClientError> {
        let lease = self.grant(ttl).await?;
        let keeper = Keeper::start(self.clone(), lease);
        let token = match self.wait_for_turn(name, owner, lease.id, wait).await {
            Ok(token) => token,
            Err(e) => {
                keeper.stop();
                let _ = self.revoke(lease.id).await;
                return Err(e);
            }
        };
        Ok(LeasedLock {
            client: self.clone(),
            name: name.to_vec(),
            owner: owner.to_owned(),
            lease: lease.id,
            token,
            keeper: Some(keeper),
        })
    }

    /// Acquire, then (queued) wait until this owner holds the lock, and
    /// confirm through the log: the token comes from the log, never from a
    /// possibly stale read.
    async fn wait_for_turn(
        &mut self,
        name: &[u8],
        owner: &str,
        lease: u64,
        wait: Option<Duration>,
    ) -> Result<u64, ClientError> {
        let deadline = wait.map(|w| Instant::now() + w);
        loop {
            match self.acquire(name, owner, lease, wait.is_some()).await? {
                Acquired::Granted { token } => return Ok(token),
                Acquired::Queued { holder, token, .. } => {
                    // Look (cheaply, outside the log) until it is our turn.
                    loop {
                        if deadline.is_some_and(|d| Instant::now() >= d) {
                            let _ = self.unlock(name, owner).await;
                            return Err(ClientError::Held {
                                owner: holder,
                                token,
                            });
                        }
                        tokio::time::sleep(TURN_POLL).await;
                        let state = self.lock_info(name).await?;
                        if state.holder.as_deref() == Some(owner) {
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// Keeps a lease alive from a background task, every third of its TTL;
/// says when the lease is lost.
struct Keeper {
    task: tokio::task::JoinHandle<()>,
    lost: watch::Receiver<bool>,
}

impl Keeper {
    fn start(mut client: Client, lease: Lease) -> Self {
        let (tell, lost) = watch::channel(false);
        let every = (lease.ttl / 3).max(Duration::from_millis(1));
        let task = tokio::spawn(async move {
            let mut kept_at = Instant::now();
            loop {
                tokio::time::sleep(every).await;
                let sent = Instant::now();
                match client.keep_alive(lease.id).await {
                    Ok(_) => kept_at = sent,
                    Err(ClientError::NoLease { .. }) => break,
                    // Unanswered: try again, unless the TTL has run out
                    // since the last renewal that was answered.
                    Err(_) if kept_at.elapsed() >= lease.ttl => break,
                    Err(_) => {}
                }
            }
            let _ = tell.send(true);
        });
        Self { task, lost }
    }

    fn stop(&self) {
        self.task.abort();
    }
}

/// A lock held on a lease kept alive in the background
/// ([`Client::lock_leased`]).
pub struct LeasedLock {
    client: Client,
    name: Vec<u8>,
    owner: String,
    lease: u64,
    token: u64,
    keeper: Option<Keeper>,
}

impl LeasedLock {
    /// The fencing token: pass it to the resource, which refuses smaller
    /// ones.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// The lease it is bound to.
    pub fn lease(&self) -> u64 {
        self.lease
    }

    /// Resolves once the lease is lost (ended, or not renewed for a TTL):
    /// the lock may then be someone else's.
    pub async fn lost(&mut self) {
        let Some(keeper) = &mut self.keeper else {
            return;
        };
        let _ = keeper.lost.wait_for(|lost| *lost).await;
    }

    /// Release the lock and end the lease.
    pub async fn release(mut self) -> Result<(), ClientError> {
        if let Some(keeper) = self.keeper.take() {
            keeper.stop();
        }
        let unlocked = self.client.unlock(&self.name, &self.owner).await;
        let revoked = self.client.revoke(self.lease).await;
        match (unlocked, revoked) {
            (
                Err(ClientError::NotOwner { .. }) | Ok(()),
                Ok(()) | Err(ClientError::NoLease { .. }),
            ) => Ok(()),
            (Err(e), _) | (_, Err(e)) => Err(e),
        }
    }
}

impl Drop for LeasedLock {
    /// Stop renewing: the lease (and the lock) end after the TTL.
    fn drop(&mut self) {
        if let Some(keeper) = self.keeper.take() {
            keeper.stop();
        }
    }
}
