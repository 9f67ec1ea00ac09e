//! Leader election for applications, on lease-bound locks.
//!
//! Campaigning for election NAME is queueing for the lock `_election/NAME`
//! on a lease kept alive in the background; the one holding it leads, and
//! proclaims its value in the key `_election/NAME`, attached to the same
//! lease. The key goes when the leader resigns or its lease ends, and the
//! next candidate in line takes the lock (with a larger fencing token) and
//! writes its own value. `leader` reads the key; `observe` watches it.
//!
//! A candidate proclaims only after the lock is granted through the log,
//! and the put is bound to its lease, so a value in the key is always the
//! value of the current holder (a candidate whose lease ended cannot put
//! it: the put finds no lease).

use crate::{Client, ClientError, LeasedLock, Watch};
use std::collections::VecDeque;
use std::time::Duration;

/// The lock and the key of election `name`.
fn election_key(name: &str) -> Vec<u8> {
    format!("_election/{name}").into_bytes()
}

/// A won election ([`Client::campaign`]): leadership lasts while the lease
/// is kept alive, until [`Leadership::resign`] or the lease is lost.
pub struct Leadership {
    client: Client,
    name: String,
    lock: LeasedLock,
}

impl Leadership {
    /// The fencing token of this term: larger than every earlier leader's.
    pub fn token(&self) -> u64 {
        self.lock.token()
    }

    /// The election.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Resolves once the lease is lost: someone else may lead now.
    pub async fn lost(&mut self) {
        self.lock.lost().await;
    }

    /// Step down: the value is deleted and the next candidate elected.
    pub async fn resign(mut self) -> Result<(), ClientError> {
        let key = election_key(&self.name);
        // The delete and the release are separate commands: the value
        // goes first, so no one reads it after the lock moved on.
        match self.client.delete(&key).await {
            Ok(()) | Err(ClientError::NotFound) => {}
            Err(e) => return Err(e),
        }
        self.lock.release().await
    }
}

impl Client {
    /// Campaign in election `name` with `value`: wait in line (as long as
    /// `wait`, or as long as it takes) until elected, then proclaim
    /// `value`. Leadership is bound to a lease of `ttl`, kept alive in the
    /// background.
    pub async fn campaign(
        &mut self,
        name: &str,
        value: &[u8],
        ttl: Duration,
        wait: Option<Duration>,
    ) -> Result<Leadership, ClientError> {
        let owner = format!("candidate-{:016x}", crate::random_u64());
        let key = election_key(name);
        let wait = wait.unwrap_or(Duration::from_secs(365 * 24 * 3600));
        let lock = self.lock_leased(&key, &owner, ttl, Some(wait)).await?;
        if let Err(e) = self.put_leased(&key, value, lock.lease()).await {
            let _ = lock.release().await;
            return Err(e);
        }
        Ok(Leadership {
            client: self.clone(),
            name: name.to_owned(),
            lock,
        })
    }

    /// Make election `name`'s leader step down, from anywhere: its value is
    /// deleted and its lease revoked, so the next candidate in line is
    /// elected. The leader learns it when its next keep-alive finds no
    /// lease ([`Leadership::lost`]). False if nobody leads.
    pub async fn resign_leader(&mut self, name: &str) -> Result<bool, ClientError> {
        let key = election_key(name);
        let state = self.lock_info(&key).await?;
        if state.holder.is_none() || state.lease == 0 {
            return Ok(false);
        }
        match self.delete(&key).await {
            Ok(()) | Err(ClientError::NotFound) => {}
            Err(e) => return Err(e),
        }
        match self.revoke(state.lease).await {
            Ok(()) | Err(ClientError::NoLease { .. }) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// The value of election `name`'s leader (through the log);
    /// [`ClientError::NotFound`] if none leads (or the new leader has not
    /// proclaimed yet).
    pub async fn leader(&mut self, name: &str) -> Result<Vec<u8>, ClientError> {
        self.get(&election_key(name)).await
    }

    /// Election `name`'s leader now and every change after it
    /// ([`Observer::next`]), with no change missed in between: the leader
    /// is read at a revision and the watch starts right after it.
    pub async fn observe(&mut self, name: &str) -> Result<Observer, ClientError> {
        let key = election_key(name);
        let page = self.list_page(&key, None, 1, false).await?;
        let current = page
            .entries
            .into_iter()
            .find(|entry| entry.key == key)
            .and_then(|entry| entry.value);
        Ok(Observer {
            watch: self.watch(&key, Some(page.revision + 1)),
            key,
            pending: VecDeque::from([current]),
        })
    }
}

/// Leader changes of one election ([`Client::observe`]).
pub struct Observer {
    watch: Watch,
    key: Vec<u8>,
    pending: VecDeque<Option<Vec<u8>>>,
}

impl Observer {
    /// The leader first, then each change, waiting for it: `Some(value)`,
    /// a leader's value; `None`, no leader (resigned, or its lease ended).
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        loop {
            if let Some(change) = self.pending.pop_front() {
                return Ok(change);
            }
            let changes = self.watch.next().await?;
            // The watch is by prefix: `_election/a` also sees `_election/ab`.
            let ours = changes.into_iter().filter(|c| c.key == self.key);
            self.pending.extend(ours.map(|c| c.value));
        }
    }
}
