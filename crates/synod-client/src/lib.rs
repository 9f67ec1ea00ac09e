//! # synod-client: talk to a Synod cluster
//!
//! [`Client`] connects to any node of a cluster (a list of client
//! endpoints), numbers its commands `(client id, sequence)`, and retries a
//! command with the same number on another node after a timeout, a lost
//! connection, or a node that cannot answer, so a retry is never applied
//! twice. Key/value operations come back as typed results and errors.
//!
//! ```text
//! Client ──Hello/Submit{id, KvCommand}──▶ node client port ──▶ Node::submit_as ──▶ log ──▶ KvStore
//!        ◀─────────────Response{id, KvResponse}──────────────────────────────────────────────┘
//! ```
//!
//! [`Pipeline`] is the other way in: one connection with its own session
//! and many commands in flight, answered in any order, with no retries
//! (for `synod bench` and bulk loads, which count failures themselves).
//!
//! The protocol itself is [`synod_api::wire`], shared with the server side;
//! [`wire`] re-exports it with the framing. This crate depends on synod-api,
//! synod-kv and tokio only: no actor runtime, no storage engine.
#![deny(missing_docs)]

mod election;
mod lease;
mod pipeline;
pub mod wire;

pub use election::{Leadership, Observer};
pub use lease::{Acquired, Lease, LeasedLock, LockState};
pub use pipeline::{Answer, Pipeline};
pub use synod_kv::{Change, Compare, CompareOp, ListEntry, Target, TxnOp};

use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use synod_core::CommandId;
use synod_kv::{KvCommand, KvResponse};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use wire::{
    CLIENT_PROTOCOL_VERSION, Failure, MemberIds, MembersReport, Reply, Request, StatusReport,
};

/// What can go wrong for a client, named after the condition.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The key does not exist.
    #[error("not found")]
    NotFound,
    /// Compare-and-set refused.
    #[error("compare-and-set failed: current value is {}", show(.current))]
    CasFailed {
        /// The current value (`None`: absent).
        current: Option<Vec<u8>>,
    },
    /// Someone else holds the lock.
    #[error("lock held by {owner} (fencing token {token})")]
    Held {
        /// The holder.
        owner: String,
        /// The holder's token.
        token: u64,
    },
    /// Unlock refused: not the holder.
    #[error("not the lock owner (held by {})", .owner.as_deref().unwrap_or("nobody"))]
    NotOwner {
        /// The holder, if any.
        owner: Option<String>,
    },
    /// A key or value is over the cluster's limit.
    #[error("{what} of {len} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// "key" or "value".
        what: String,
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// No answer within the client's timeout (the command may still be
    /// applied; retrying it with the same id is safe).
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// No endpoint could be reached or none could answer.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    /// The request cannot be served as asked (an empty key or lock owner,
    /// a malformed command); nothing was sent or applied.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A node refused this client (wrong cluster, bad token, version).
    #[error("refused by the cluster: {0}")]
    Refused(String),
    /// A reply that does not decode or does not fit.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The cluster no longer keeps the changes a watch asked for: the
    /// oldest it has is `horizon`. List again, then watch from there.
    #[error("the watch history starts at revision {horizon}: list again and watch from there")]
    Compacted {
        /// The oldest revision the history holds whole.
        horizon: u64,
    },
    /// The lease does not exist: it expired, was revoked, or never was.
    #[error("lease {id} does not exist (expired or revoked)")]
    NoLease {
        /// The lease asked for.
        id: u64,
    },
    /// The client's session expired again right after it was renewed (the
    /// command was not applied; see `paxos.session_horizon`).
    #[error("the client session keeps expiring; the command was not applied")]
    SessionExpired,
}

fn show(value: &Option<Vec<u8>>) -> String {
    value.as_ref().map_or_else(
        || "absent".to_owned(),
        |v| format!("{:?}", String::from_utf8_lossy(v)),
    )
}

/// How often a [`Watch`] asks again while nothing changes.
const WATCH_POLL: Duration = Duration::from_millis(50);

/// A stream of the changes under a prefix ([`Client::watch`]). It reads
/// the history the learners keep (a query, outside the log) and asks
/// again every 50 ms while nothing changes. Changes come in revision order,
/// whole revisions at a time, never twice and never with a gap: on a
/// failure it carries on from the next revision through another node.
pub struct Watch {
    client: Client,
    prefix: Vec<u8>,
    /// The revision to ask from (0: now).
    next: u64,
    poll: Duration,
}

impl Watch {
    /// The next changes (at least one), waiting for them.
    /// [`ClientError::Compacted`] if the cluster no longer keeps them.
    pub async fn next(&mut self) -> Result<Vec<Change>, ClientError> {
        loop {
            let ask = KvCommand::Changes {
                prefix: self.prefix.clone(),
                from: self.next,
                limit: 0,
            };
            match self.client.kv_query(ask).await? {
                KvResponse::Changes { changes, next, .. } => {
                    self.next = next;
                    if !changes.is_empty() {
                        return Ok(changes);
                    }
                }
                KvResponse::Compacted { horizon } => {
                    return Err(ClientError::Compacted { horizon });
                }
                other => return Err(unexpected(other)),
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// The revision the next changes will be asked from.
    pub fn position(&self) -> u64 {
        self.next
    }
}

/// How a transaction went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnOutcome {
    /// Whether every compare held (the success branch ran; otherwise the
    /// failure branch did).
    pub succeeded: bool,
    /// The transaction's revision.
    pub revision: u64,
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListPage {
    /// The entries, in key order.
    pub entries: Vec<ListEntry>,
    /// Whether more keys match after the last entry.
    pub more: bool,
    /// The revision the page was read at.
    pub revision: u64,
}

/// How to reach a cluster.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Client endpoints of the nodes (any subset works).
    pub endpoints: Vec<SocketAddr>,
    /// The cluster id.
    pub cluster: String,
    /// The client token, when the cluster requires one.
    pub token: Option<String>,
    /// How long one call may take, retries included.
    pub timeout: Duration,
    /// How long to wait for one node before trying the next.
    pub attempt_timeout: Duration,
    /// TLS to the client ports (the cluster's `[tls]`), if it uses it.
    pub tls: Option<ClientTlsConfig>,
}

/// TLS to a cluster's client ports: the CA, and the name each endpoint's
/// certificate must carry (its node's name; an endpoint not named here
/// must present a certificate for its IP address).
#[derive(Clone, Debug)]
pub struct ClientTlsConfig {
    /// Trusts the cluster's CA.
    pub tls: synod_tls::ClientTls,
    /// The node name of each endpoint.
    pub names: std::collections::BTreeMap<SocketAddr, String>,
}

impl ClientTlsConfig {
    /// Trust the CA in `ca_file`; endpoints are named with [`Self::name`].
    pub fn load(ca_file: &std::path::Path) -> Result<Self, synod_tls::TlsError> {
        Ok(Self {
            tls: synod_tls::ClientTls::load(ca_file)?,
            names: Default::default(),
        })
    }

    /// Expect `node`'s certificate at `endpoint`.
    pub fn name(mut self, endpoint: SocketAddr, node: impl Into<String>) -> Self {
        self.names.insert(endpoint, node.into());
        self
    }
}

impl ClientConfig {
    /// Defaults: 10 s per call, 2 s per attempt.
    pub fn new(endpoints: Vec<SocketAddr>, cluster: impl Into<String>) -> Self {
        Self {
            endpoints,
            cluster: cluster.into(),
            token: None,
            timeout: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(2),
            tls: None,
        }
    }
}

type Connection = Framed<synod_tls::BoxStream, LengthDelimitedCodec>;

/// A client of one cluster: one command at a time per handle. Clone it
/// for each task that sends commands; clones share one session (their
/// commands are numbered in it, so a retry through any of them is still
/// applied once) and each has its own connection.
pub struct Client {
    config: ClientConfig,
    numbering: Arc<Numbering>,
    /// The tag of the last query (answers on a connection are matched by it).
    query_tag: u64,
    next_endpoint: usize,
    connection: Option<Connection>,
}

impl Clone for Client {
    /// Another handle on the same session, on its own connection (opened
    /// on first use, to the next endpoint).
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            numbering: Arc::clone(&self.numbering),
            query_tag: 0,
            next_endpoint: self.next_endpoint + 1,
            connection: None,
        }
    }
}

/// How the handles of one client number their commands.
#[derive(Debug)]
struct Numbering {
    ids: std::sync::Mutex<Ids>,
    /// Held while a session is opened, so the handles open one, not many.
    opening: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct Ids {
    /// Nonces for session opens (random start).
    nonce: u64,
    /// The session commands are numbered in, once opened.
    session: Option<u64>,
    /// The last sequence number used in it.
    seq: u64,
}

impl Numbering {
    fn new() -> Self {
        let ids = Ids {
            nonce: random_u64(),
            session: None,
            seq: 0,
        };
        Self {
            ids: std::sync::Mutex::new(ids),
            opening: tokio::sync::Mutex::new(()),
        }
    }

    fn ids(&self) -> std::sync::MutexGuard<'_, Ids> {
        // Nothing panics while holding it; a poisoned lock is still sound.
        self.ids.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next command id, if a session is open.
    fn next(&self) -> Option<CommandId> {
        let mut ids = self.ids();
        let client = ids.session?;
        ids.seq += 1;
        Some(CommandId {
            client,
            seq: ids.seq,
        })
    }

    /// Drop `session` (expired), unless another handle already replaced it.
    fn forget(&self, session: u64) {
        let mut ids = self.ids();
        if ids.session == Some(session) {
            ids.session = None;
        }
    }
}

/// Through the log, or from one node's learner as applied so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Read {
    Linearizable,
    Serializable,
}

/// What one attempt asks a node, and how its answer is recognized among
/// late answers to earlier attempts.
#[derive(Clone, Copy)]
enum Ask<'a> {
    /// A command through the log.
    Command { id: CommandId, payload: &'a [u8] },
    /// A read from the node's learner, outside the log.
    Query { tag: u64, payload: &'a [u8] },
    /// A linearizable read outside the log (read index).
    Read { tag: u64, payload: &'a [u8] },
    /// A single-decree instance: propose `value` (or only read) and get
    /// the chosen value ([`ClientError::NotFound`]: a read of an instance
    /// not decided yet).
    Decide {
        tag: u64,
        name: &'a str,
        value: Option<&'a [u8]>,
    },
}

impl Ask<'_> {
    fn request(&self) -> Request {
        match *self {
            Ask::Command { id, payload } => Request::Submit {
                id,
                payload: payload.to_vec(),
            },
            Ask::Query { tag, payload } => Request::Query {
                tag,
                payload: payload.to_vec(),
            },
            Ask::Read { tag, payload } => Request::Read {
                tag,
                payload: payload.to_vec(),
            },
            Ask::Decide { tag, name, value } => Request::Decide {
                tag,
                name: name.to_owned(),
                value: value.map(<[u8]>::to_vec),
            },
        }
    }

    /// The answer to this ask, if `reply` is it.
    fn answer(&self, reply: Reply) -> Option<Result<Vec<u8>, ClientError>> {
        match (*self, reply) {
            (Ask::Command { id, .. }, Reply::Response { id: to, payload }) if to == id => {
                Some(Ok(payload))
            }
            (Ask::Command { id, .. }, Reply::Failed { id: to, error }) if to == id => {
                Some(Err(failure(error)))
            }
            (
                Ask::Query { tag, .. } | Ask::Read { tag, .. },
                Reply::QueryAnswer { tag: to, payload },
            ) if to == tag => Some(Ok(payload)),
            (
                Ask::Query { tag, .. } | Ask::Read { tag, .. } | Ask::Decide { tag, .. },
                Reply::QueryFailed { tag: to, error },
            ) if to == tag => Some(Err(failure(error))),
            (Ask::Decide { tag, .. }, Reply::Decision { tag: to, value }) if to == tag => {
                Some(value.ok_or(ClientError::NotFound))
            }
            _ => None, // a late answer to an earlier attempt
        }
    }
}

impl Client {
    /// A client for `config`; connects lazily.
    pub fn new(config: ClientConfig) -> Self {
        Self {
            config,
            numbering: Arc::new(Numbering::new()),
            query_tag: 0,
            next_endpoint: 0,
            connection: None,
        }
    }

    /// Set `key` to `value`.
    pub async fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), ClientError> {
        self.kv(KvCommand::Put {
            key: key.to_vec(),
            value: value.to_vec(),
        })
        .await
        .map(drop)
    }

    /// The value of `key` (linearizable: read through the log).
    pub async fn get(&mut self, key: &[u8]) -> Result<Vec<u8>, ClientError> {
        match self.kv(KvCommand::Get { key: key.to_vec() }).await? {
            KvResponse::Value(value) => Ok(value),
            other => Err(unexpected(other)),
        }
    }

    /// The value of `key` as the learner of the node this client talks to
    /// has applied it, outside the log: faster, but it may miss the latest
    /// writes (serializable, not linearizable).
    pub async fn get_serializable(&mut self, key: &[u8]) -> Result<Vec<u8>, ClientError> {
        match self.kv_query(KvCommand::Get { key: key.to_vec() }).await? {
            KvResponse::Value(value) => Ok(value),
            other => Err(unexpected(other)),
        }
    }

    /// The value of `key`, linearizable without a log slot (read index:
    /// the leader confirms its leadership with a quorum of acceptors and
    /// the node's learner answers once it has applied what was decided
    /// before): one round trip to the acceptors, no disk write.
    pub async fn get_read_index(&mut self, key: &[u8]) -> Result<Vec<u8>, ClientError> {
        let command = KvCommand::Get { key: key.to_vec() };
        command
            .check()
            .map_err(|why| ClientError::Invalid(why.to_owned()))?;
        let payload = self.read(command.encode()).await?;
        match kv_answer(&payload)? {
            KvResponse::Value(value) => Ok(value),
            other => Err(unexpected(other)),
        }
    }

    /// Remove `key`.
    pub async fn delete(&mut self, key: &[u8]) -> Result<(), ClientError> {
        self.kv(KvCommand::Delete { key: key.to_vec() })
            .await
            .map(drop)
    }

    /// Set `key` to `new` if its value is `expected` (`None`: if absent).
    pub async fn cas(
        &mut self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<(), ClientError> {
        let command = KvCommand::Cas {
            key: key.to_vec(),
            expected: expected.map(<[u8]>::to_vec),
            new: new.to_vec(),
        };
        self.kv(command).await.map(drop)
    }

    /// Take lock `name` for `owner`; returns the fencing token.
    pub async fn lock(&mut self, name: &[u8], owner: &str) -> Result<u64, ClientError> {
        match self
            .kv(KvCommand::Lock {
                name: name.to_vec(),
                owner: owner.to_owned(),
            })
            .await?
        {
            KvResponse::Granted { token } => Ok(token),
            other => Err(unexpected(other)),
        }
    }

    /// Release lock `name` held by `owner`.
    pub async fn unlock(&mut self, name: &[u8], owner: &str) -> Result<(), ClientError> {
        self.kv(KvCommand::Unlock {
            name: name.to_vec(),
            owner: owner.to_owned(),
        })
        .await
        .map(drop)
    }

    /// Apply `success` if every compare holds, `failure` otherwise, as one
    /// command at one revision.
    pub async fn txn(
        &mut self,
        compares: Vec<Compare>,
        success: Vec<TxnOp>,
        failure: Vec<TxnOp>,
    ) -> Result<TxnOutcome, ClientError> {
        let command = KvCommand::Txn {
            compares,
            success,
            failure,
        };
        match self.kv(command).await? {
            KvResponse::Txn {
                succeeded,
                revision,
            } => Ok(TxnOutcome {
                succeeded,
                revision,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// One page of the keys starting with `prefix`, after `after` (the last
    /// key of the previous page), at most `limit` entries (0: as many as a
    /// page holds). Linearizable: read through the log.
    pub async fn list_page(
        &mut self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: u32,
        keys_only: bool,
    ) -> Result<ListPage, ClientError> {
        self.page(prefix, after, limit, keys_only, Read::Linearizable)
            .await
    }

    async fn page(
        &mut self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: u32,
        keys_only: bool,
        read: Read,
    ) -> Result<ListPage, ClientError> {
        let command = KvCommand::List {
            prefix: prefix.to_vec(),
            after: after.map(<[u8]>::to_vec),
            limit,
            keys_only,
        };
        let response = match read {
            Read::Linearizable => self.kv(command).await?,
            Read::Serializable => self.kv_query(command).await?,
        };
        match response {
            KvResponse::Entries {
                entries,
                more,
                revision,
            } => Ok(ListPage {
                entries,
                more,
                revision,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// The keys starting with `prefix`, in key order, at most `limit` (`None`:
    /// all), fetched page by page. Each page is linearizable at its own
    /// revision; a listing of several pages is not one snapshot.
    pub async fn list(
        &mut self,
        prefix: &[u8],
        limit: Option<usize>,
        keys_only: bool,
    ) -> Result<Vec<ListEntry>, ClientError> {
        self.list_with(prefix, limit, keys_only, Read::Linearizable)
            .await
    }

    /// [`Client::list`] from the learner of the node this client talks to,
    /// outside the log: serializable, it may miss the latest writes.
    pub async fn list_serializable(
        &mut self,
        prefix: &[u8],
        limit: Option<usize>,
        keys_only: bool,
    ) -> Result<Vec<ListEntry>, ClientError> {
        self.list_with(prefix, limit, keys_only, Read::Serializable)
            .await
    }

    async fn list_with(
        &mut self,
        prefix: &[u8],
        limit: Option<usize>,
        keys_only: bool,
        read: Read,
    ) -> Result<Vec<ListEntry>, ClientError> {
        let mut entries: Vec<ListEntry> = Vec::new();
        loop {
            let wanted = limit.map_or(0, |limit| limit.saturating_sub(entries.len()));
            let wanted = u32::try_from(wanted).unwrap_or(u32::MAX);
            let after = entries.last().map(|entry| entry.key.as_slice());
            let page = self.page(prefix, after, wanted, keys_only, read).await?;
            entries.extend(page.entries);
            let enough = limit.is_some_and(|limit| entries.len() >= limit);
            if !page.more || enough {
                return Ok(entries);
            }
        }
    }

    /// Follow the changes to keys under `prefix` from revision `from` on
    /// (`None`: from now), in revision order, on a clone of this client.
    pub fn watch(&self, prefix: &[u8], from: Option<u64>) -> Watch {
        Watch {
            client: self.clone(),
            prefix: prefix.to_vec(),
            next: from.unwrap_or(0),
            poll: WATCH_POLL,
        }
    }

    /// Status of the node at `endpoint`.
    pub async fn status_of(&self, endpoint: SocketAddr) -> Result<StatusReport, ClientError> {
        let mut connection = connect(&self.config, endpoint).await?;
        send(&mut connection, &Request::Status).await?;
        match tokio::time::timeout(self.config.attempt_timeout, receive(&mut connection)).await {
            Ok(Ok(Reply::Status(report))) => Ok(report),
            Ok(Ok(other)) => Err(ClientError::Protocol(format!("unexpected reply {other:?}"))),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClientError::Timeout(self.config.attempt_timeout)),
        }
    }

    /// The configuration the proposer of the node at `endpoint` works in
    /// ([`ClientError::Refused`] from a node without a proposer).
    pub async fn members_of(&self, endpoint: SocketAddr) -> Result<MembersReport, ClientError> {
        match self
            .one_request(endpoint, Request::Members { tag: 0 })
            .await?
        {
            Reply::Members { members, .. } => Ok(members),
            Reply::Reconfiguring {
                refused: Some(reason),
                ..
            } => Err(ClientError::Refused(reason)),
            other => Err(ClientError::Protocol(format!("unexpected reply {other:?}"))),
        }
    }

    /// Ask the node at `endpoint` for `members` as configuration `epoch`
    /// (the current one's plus one): its proposer proposes it if it
    /// leads, else forwards it to the leader. `Ok` means it went to the
    /// leader, not that it took effect: watch [`Client::members_of`].
    pub async fn reconfigure_at(
        &self,
        endpoint: SocketAddr,
        epoch: u32,
        members: MemberIds,
    ) -> Result<(), ClientError> {
        let request = Request::Reconfigure {
            tag: 0,
            epoch,
            members,
        };
        match self.one_request(endpoint, request).await? {
            Reply::Reconfiguring { refused: None, .. } => Ok(()),
            Reply::Reconfiguring {
                refused: Some(reason),
                ..
            } => Err(ClientError::Refused(reason)),
            other => Err(ClientError::Protocol(format!("unexpected reply {other:?}"))),
        }
    }

    /// Send one request on a fresh connection to `endpoint` and wait for
    /// one reply.
    async fn one_request(
        &self,
        endpoint: SocketAddr,
        request: Request,
    ) -> Result<Reply, ClientError> {
        let mut connection = connect(&self.config, endpoint).await?;
        send(&mut connection, &request).await?;
        match tokio::time::timeout(self.config.attempt_timeout, receive(&mut connection)).await {
            Ok(reply) => reply,
            Err(_) => Err(ClientError::Timeout(self.config.attempt_timeout)),
        }
    }

    /// A backup: a fresh snapshot of the first endpoint's learner that can
    /// give one (consistent at one slot), written to `out`. Returns the
    /// slot it covers up to. `out` holds a complete snapshot file only if
    /// this returns `Ok`.
    pub async fn backup(&self, out: &mut dyn std::io::Write) -> Result<u64, ClientError> {
        let mut last = ClientError::Unavailable("no endpoints configured".into());
        for endpoint in &self.config.endpoints {
            let mut written = 0;
            match self.backup_from(*endpoint, out, &mut written).await {
                Ok(upto) => return Ok(upto),
                // Part of a file is out there: the next node cannot go on
                // from it.
                Err(error) if written > 0 => return Err(error),
                Err(ClientError::Refused(reason)) => return Err(ClientError::Refused(reason)),
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    async fn backup_from(
        &self,
        endpoint: SocketAddr,
        out: &mut dyn std::io::Write,
        written: &mut u64,
    ) -> Result<u64, ClientError> {
        let mut connection = connect(&self.config, endpoint).await?;
        send(&mut connection, &Request::Backup).await?;
        loop {
            // Taking the snapshot may wait for the learner to settle.
            let wait = self.config.timeout;
            let reply = tokio::time::timeout(wait, receive(&mut connection))
                .await
                .map_err(|_| ClientError::Timeout(wait))??;
            let (upto, offset, total, data) = match reply {
                Reply::BackupChunk {
                    upto,
                    offset,
                    total,
                    data,
                } => (upto, offset, total, data),
                Reply::BackupFailed { reason } => {
                    return Err(ClientError::Unavailable(format!("{endpoint}: {reason}")));
                }
                other => return Err(ClientError::Protocol(format!("unexpected reply {other:?}"))),
            };
            if offset != *written || data.is_empty() || offset + data.len() as u64 > total {
                return Err(ClientError::Protocol(format!(
                    "a backup chunk at {offset} of {total} bytes after {written}"
                )));
            }
            out.write_all(&data)
                .map_err(|e| ClientError::Unavailable(format!("writing the backup: {e}")))?;
            *written += data.len() as u64;
            if *written == total {
                return Ok(upto);
            }
        }
    }

    /// Run one KV command; the KV's refusals become typed errors.
    async fn kv(&mut self, command: KvCommand) -> Result<KvResponse, ClientError> {
        command
            .check()
            .map_err(|why| ClientError::Invalid(why.to_owned()))?;
        let payload = self.call(command.encode()).await?;
        kv_answer(&payload)
    }

    /// Run one KV read outside the log.
    async fn kv_query(&mut self, command: KvCommand) -> Result<KvResponse, ClientError> {
        command
            .check()
            .map_err(|why| ClientError::Invalid(why.to_owned()))?;
        let payload = self.query(command.encode()).await?;
        kv_answer(&payload)
    }

    /// Submit `payload` under a fresh id of this client's session (opened
    /// on first use) and retry it, same id, across endpoints until answered
    /// or the call's timeout passes. A command refused because the session
    /// expired was not applied: it is submitted again in a new session.
    pub async fn call(&mut self, payload: Vec<u8>) -> Result<Vec<u8>, ClientError> {
        if self.config.endpoints.is_empty() {
            return Err(ClientError::Unavailable("no endpoints configured".into()));
        }
        for _ in 0..2 {
            let id = self.next_id().await?;
            match self
                .ask(Ask::Command {
                    id,
                    payload: &payload,
                })
                .await
            {
                Err(ClientError::SessionExpired) => self.numbering.forget(id.client),
                other => return other,
            }
        }
        Err(ClientError::SessionExpired)
    }

    /// The next id in this client's session, opened through the log if it
    /// has none (by one handle; the others wait for it).
    async fn next_id(&mut self) -> Result<CommandId, ClientError> {
        if let Some(id) = self.numbering.next() {
            return Ok(id);
        }
        let numbering = Arc::clone(&self.numbering);
        let _opening = numbering.opening.lock().await;
        if let Some(id) = numbering.next() {
            return Ok(id); // another handle opened one meanwhile
        }
        let nonce = {
            let mut ids = numbering.ids();
            ids.nonce = ids.nonce.wrapping_add(1);
            ids.nonce
        };
        let open = CommandId {
            client: nonce,
            seq: wire::OPEN_SESSION,
        };
        let answer = self
            .ask(Ask::Command {
                id: open,
                payload: &[],
            })
            .await?;
        let session = session_id(&answer)?;
        let mut ids = numbering.ids();
        ids.session = Some(session);
        ids.seq = 1;
        Ok(CommandId {
            client: session,
            seq: 1,
        })
    }

    /// Read `request` from the learner of the node this client talks to,
    /// outside the log (`StateMachine::query`): serializable, it may miss
    /// the latest writes. Another node is tried if this one cannot answer.
    pub async fn query(&mut self, request: Vec<u8>) -> Result<Vec<u8>, ClientError> {
        let tag = self.next_tag()?;
        self.ask(Ask::Query {
            tag,
            payload: &request,
        })
        .await
    }

    /// Read `request` linearizably outside the log (read index; see
    /// [`Client::get_read_index`]), from whichever node answers.
    pub async fn read(&mut self, request: Vec<u8>) -> Result<Vec<u8>, ClientError> {
        let tag = self.next_tag()?;
        self.ask(Ask::Read {
            tag,
            payload: &request,
        })
        .await
    }

    /// The tag of this client's next query, read or register request.
    fn next_tag(&mut self) -> Result<u64, ClientError> {
        if self.config.endpoints.is_empty() {
            return Err(ClientError::Unavailable("no endpoints configured".into()));
        }
        self.query_tag += 1;
        Ok(self.query_tag)
    }

    /// Propose `value` for the decide-once register `name` (single-decree
    /// Paxos) and return the value chosen: this one, or one proposed
    /// earlier or concurrently. Every caller, on any node, gets the same
    /// value; asking again is safe and answers the same.
    pub async fn decide(&mut self, name: &str, value: &[u8]) -> Result<Vec<u8>, ClientError> {
        self.decide_ask(name, Some(value)).await
    }

    /// The value chosen for register `name`, if the node asked has learned
    /// one (`None`: not decided, or not learned there yet).
    pub async fn decided(&mut self, name: &str) -> Result<Option<Vec<u8>>, ClientError> {
        match self.decide_ask(name, None).await {
            Ok(value) => Ok(Some(value)),
            Err(ClientError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn decide_ask(
        &mut self,
        name: &str,
        value: Option<&[u8]>,
    ) -> Result<Vec<u8>, ClientError> {
        if name.is_empty() {
            return Err(ClientError::Invalid("the register name is empty".into()));
        }
        let tag = self.next_tag()?;
        self.ask(Ask::Decide { tag, name, value }).await
    }

    /// Send `ask`, and send it again to the next node after a timeout, a
    /// lost connection or a node that cannot answer, until answered or the
    /// call's timeout passes.
    async fn ask(&mut self, ask: Ask<'_>) -> Result<Vec<u8>, ClientError> {
        let deadline = Instant::now() + self.config.timeout;
        let mut last_problem = String::from("no attempt finished");
        let mut pause = Duration::from_millis(20);
        while Instant::now() < deadline {
            match self.attempt(ask, deadline).await {
                Ok(answer) => return Ok(answer),
                Err(ClientError::Refused(reason)) => return Err(ClientError::Refused(reason)),
                Err(too_large @ ClientError::TooLarge { .. }) => return Err(too_large),
                Err(invalid @ ClientError::Invalid(_)) => return Err(invalid),
                Err(ClientError::NotFound) => return Err(ClientError::NotFound),
                Err(ClientError::SessionExpired) => return Err(ClientError::SessionExpired),
                Err(problem) => {
                    last_problem = problem.to_string();
                    self.connection = None; // try the next node
                    self.next_endpoint += 1;
                    // Back off (doubling, at most 1 s) so a cluster that is
                    // electing a leader or restarting is not hammered.
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
        if last_problem.starts_with("no answer") {
            Err(ClientError::Timeout(self.config.timeout))
        } else {
            Err(ClientError::Unavailable(last_problem))
        }
    }

    async fn attempt(&mut self, ask: Ask<'_>, deadline: Instant) -> Result<Vec<u8>, ClientError> {
        let wait = self
            .config
            .attempt_timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        if self.connection.is_none() {
            let endpoint = self.config.endpoints[self.next_endpoint % self.config.endpoints.len()];
            self.connection = Some(
                tokio::time::timeout(wait, connect(&self.config, endpoint))
                    .await
                    .map_err(|_| ClientError::Timeout(wait))??,
            );
        }
        let connection = self.connection.as_mut().expect("connected above");
        send(connection, &ask.request()).await?;
        let started = Instant::now();
        loop {
            let left = wait.saturating_sub(started.elapsed());
            let reply = tokio::time::timeout(left, receive(connection))
                .await
                .map_err(|_| ClientError::Timeout(wait))??;
            if let Some(answer) = ask.answer(reply) {
                return answer;
            }
        }
    }
}

fn failure(error: Failure) -> ClientError {
    match error {
        Failure::NoLearner => ClientError::Unavailable("node has no learner".into()),
        Failure::Busy => ClientError::Unavailable("node busy".into()),
        Failure::Timeout => ClientError::Timeout(Duration::ZERO),
        Failure::ShuttingDown => ClientError::Unavailable("node shutting down".into()),
        Failure::InvalidCommand => ClientError::Invalid("the node refused the command id".into()),
        Failure::TooLarge { len, limit } => ClientError::TooLarge {
            what: "command".into(),
            len: len as usize,
            limit: limit as usize,
        },
        Failure::SessionExpired => ClientError::SessionExpired,
        Failure::NoQueries => {
            ClientError::Invalid("the cluster serves no reads outside the log".into())
        }
        Failure::TooManyInstances { limit } => ClientError::Refused(format!(
            "the cluster already keeps {limit} decided instances (paxos.max_instances)"
        )),
    }
}

/// A KV response; the KV's refusals become typed errors.
fn kv_answer(payload: &[u8]) -> Result<KvResponse, ClientError> {
    let response = KvResponse::decode(payload).map_err(|e| ClientError::Protocol(e.to_string()))?;
    match response {
        KvResponse::NotFound => Err(ClientError::NotFound),
        KvResponse::CasFailed { current } => Err(ClientError::CasFailed { current }),
        KvResponse::Held { owner, token } => Err(ClientError::Held { owner, token }),
        KvResponse::NotOwner { owner } => Err(ClientError::NotOwner { owner }),
        KvResponse::TooLarge { what, len, limit } => {
            Err(ClientError::TooLarge { what, len, limit })
        }
        KvResponse::Malformed(why) => Err(ClientError::Protocol(why)),
        ok => Ok(ok),
    }
}

fn unexpected(response: KvResponse) -> ClientError {
    ClientError::Protocol(format!("unexpected response {response:?}"))
}

/// The session id a session open is answered with (8 bytes, big-endian).
fn session_id(payload: &[u8]) -> Result<u64, ClientError> {
    let bytes: [u8; 8] = payload
        .try_into()
        .map_err(|_| ClientError::Protocol(format!("a session id of {} bytes", payload.len())))?;
    Ok(u64::from_be_bytes(bytes))
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

async fn connect(config: &ClientConfig, endpoint: SocketAddr) -> Result<Connection, ClientError> {
    let stream = TcpStream::connect(endpoint)
        .await
        .map_err(|e| ClientError::Unavailable(format!("{endpoint}: {e}")))?;
    let _ = stream.set_nodelay(true);
    let stream: synod_tls::BoxStream = match &config.tls {
        Some(tls) => {
            let name = tls
                .names
                .get(&endpoint)
                .cloned()
                .unwrap_or_else(|| endpoint.ip().to_string());
            tls.tls
                .connect(&name, stream)
                .await
                .map_err(|e| ClientError::Refused(format!("{endpoint}: TLS: {e}")))?
        }
        None => Box::new(stream),
    };
    let mut connection = Framed::new(stream, wire::client_codec());
    let hello = Request::Hello {
        version: CLIENT_PROTOCOL_VERSION,
        cluster: config.cluster.clone(),
        token: config.token.clone(),
    };
    send(&mut connection, &hello).await?;
    match receive(&mut connection).await? {
        Reply::Welcome { .. } => Ok(connection),
        Reply::Refused { reason } => Err(ClientError::Refused(reason)),
        other => Err(ClientError::Protocol(format!(
            "expected Welcome, got {other:?}"
        ))),
    }
}

async fn send(connection: &mut Connection, request: &Request) -> Result<(), ClientError> {
    connection
        .send(wire::encode(request))
        .await
        .map_err(|e| ClientError::Unavailable(e.to_string()))
}

async fn receive(connection: &mut Connection) -> Result<Reply, ClientError> {
    let frame = connection
        .next()
        .await
        .ok_or_else(|| ClientError::Unavailable("connection closed".into()))?
        .map_err(|e| ClientError::Unavailable(e.to_string()))?;
    wire::decode(&frame).map_err(|e| ClientError::Protocol(e.to_string()))
}
