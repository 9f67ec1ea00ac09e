//! The client port: clients (synod-client, the `synod` CLI) connect here,
//! say hello with the cluster id and, when the cluster sets one, the client
//! token, then submit commands and ask for status. Everything goes through
//! the node's gateway, exactly like `Node::submit`; nothing a client sends
//! can reach the Paxos roles as a protocol message.
//!
//! Limits (`[clients]`): at most `max_connections` connections are served;
//! one more is closed at once, before its hello, and counted. Each
//! connection has at most `max_in_flight` requests in service; past that
//! the node stops reading it until one is answered, so a client that
//! pipelines without bound is slowed by TCP flow control instead of
//! growing the node's memory.
//!
//! Before its hello a connection may send one frame of at most
//! [`HELLO_FRAME_MAX`] bytes, within [`HELLO_TIMEOUT`], and at most
//! [`MAX_UNAUTHENTICATED`] connections wait for theirs at once (past it a
//! new one is closed on arrival): strangers hold at most a few hundred KiB.
//! An authenticated connection with nothing in service for
//! `clients.idle_timeout` is closed, so idle clients cannot keep every
//! place taken.

use crate::config::ClientSettings;
use crate::gateway::{Gateway, NodeStatus};
use futures_util::{SinkExt, StreamExt};
use std::io::Read;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use synod_api::wire::{
    BACKUP_CHUNK, CLIENT_PROTOCOL_VERSION, Failure, LearnerReport, MAX_CLIENT_FRAME,
    ProposerReport, Reply, Request, StatusReport,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

/// A client that has not said hello by then is dropped.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest frame read before the hello is accepted (a hello holds a
/// version, the cluster id and the token).
pub const HELLO_FRAME_MAX: usize = 4096;
/// Most client connections waiting for their hello at once.
pub const MAX_UNAUTHENTICATED: usize = 64;
/// Replies waiting to be written per connection before the connection
/// stops reading new requests.
const REPLY_QUEUE: usize = 1024;

/// What a client must present, and what the port serves at once.
pub(crate) struct ClientPort {
    pub(crate) cluster: String,
    pub(crate) token: Option<String>,
    pub(crate) limits: ClientSettings,
    pub(crate) stats: Arc<ClientPortStats>,
    /// Server TLS (with `[tls]`).
    pub(crate) tls: Option<synod_tls::ServerTls>,
}

/// Counters of one node's client port.
#[derive(Debug, Default)]
pub struct ClientPortStats {
    /// Connections being served now.
    pub open: AtomicUsize,
    /// Connections closed on arrival because `clients.max_connections`
    /// were being served.
    pub turned_away: AtomicU64,
    /// The most requests one connection has had in service at once.
    pub peak_in_flight: AtomicUsize,
    /// Connections closed after `clients.idle_timeout` with nothing in
    /// service.
    pub closed_idle: AtomicU64,
}

/// Accept client connections until `stop` is cancelled.
pub(crate) fn spawn(
    listener: TcpListener,
    gateway: Rc<Gateway>,
    port: ClientPort,
    stop: CancellationToken,
) {
    let port = Rc::new(port);
    let connections = Arc::new(Semaphore::new(port.limits.max_connections));
    let unauthenticated = Arc::new(Semaphore::new(MAX_UNAUTHENTICATED));
    actix::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = stop.cancelled() => return,
            };
            let (stream, address) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "client accept failed");
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
                port.stats.turned_away.fetch_add(1, Ordering::Relaxed);
                let limit = port.limits.max_connections;
                tracing::warn!(%address, limit, "client connection limit reached; closing");
                continue; // dropping the stream closes it
            };
            let Ok(waiting) = Arc::clone(&unauthenticated).try_acquire_owned() else {
                port.stats.turned_away.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%address, "too many clients before their hello; closing");
                continue;
            };
            let (gateway, port, stop) = (Rc::clone(&gateway), Rc::clone(&port), stop.clone());
            actix::spawn(async move {
                port.stats.open.fetch_add(1, Ordering::Relaxed);
                tokio::select! {
                    result = serve(stream, gateway, &port, waiting) => {
                        if let Err(reason) = result {
                            tracing::info!(%address, %reason, "client connection closed");
                        }
                    }
                    () = stop.cancelled() => {}
                }
                port.stats.open.fetch_sub(1, Ordering::Relaxed);
                drop(permit);
            });
        }
    });
}

async fn serve(
    stream: TcpStream,
    gateway: Rc<Gateway>,
    port: &ClientPort,
    waiting: OwnedSemaphorePermit,
) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    let stream: synod_tls::BoxStream = match &port.tls {
        Some(tls) => tokio::time::timeout(HELLO_TIMEOUT, tls.accept(stream))
            .await
            .map_err(|_| "no TLS handshake".to_owned())?
            .map_err(|e| format!("TLS: {e}"))?,
        None => Box::new(stream),
    };
    let mut framed = Framed::new(stream, client_codec(HELLO_FRAME_MAX));
    let hello = tokio::time::timeout(HELLO_TIMEOUT, framed.next())
        .await
        .map_err(|_| "no hello".to_owned())?;
    let hello = hello
        .ok_or("closed before hello")?
        .map_err(|e| e.to_string())?;
    let refusal = match decode_request(&hello) {
        Ok(Request::Hello {
            version,
            cluster,
            token,
        }) => check_hello(port, version, &cluster, token.as_deref()),
        Ok(_) => Some("expected Hello".to_owned()),
        Err(e) => Some(format!("malformed hello: {e}")),
    };
    if let Some(reason) = refusal {
        let _ = framed
            .send(encode_reply(&Reply::Refused {
                reason: reason.clone(),
            }))
            .await;
        return Err(reason);
    }
    framed
        .send(encode_reply(&Reply::Welcome {
            node: gateway.name.clone(),
        }))
        .await
        .map_err(|e| e.to_string())?;
    drop(waiting);
    framed.codec_mut().set_max_frame_length(MAX_CLIENT_FRAME);
    let (mut sink, mut frames) = framed.split();

    // Requests are served concurrently, at most `max_in_flight` at once;
    // replies leave through one writer.
    let max_in_flight = port.limits.max_in_flight;
    let in_flight = Arc::new(Semaphore::new(max_in_flight));
    let (replies, mut outgoing) = mpsc::channel::<Reply>(REPLY_QUEUE);
    let writer = actix::spawn(async move {
        let mut ready = Vec::new();
        // Every reply ready now goes out in one write: one syscall per
        // wakeup, not per reply.
        while outgoing.recv_many(&mut ready, REPLY_QUEUE).await > 0 {
            for reply in ready.drain(..) {
                if sink.feed(encode_reply(&reply)).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    let idle_timeout = port.limits.idle_timeout;
    loop {
        let frame = match tokio::time::timeout(idle_timeout, frames.next()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            // Quiet, but still waiting for answers: not idle.
            Err(_) if in_flight.available_permits() < max_in_flight => continue,
            Err(_) => {
                port.stats.closed_idle.fetch_add(1, Ordering::Relaxed);
                break;
            }
        };
        let frame = frame.map_err(|e| e.to_string())?;
        let request = decode_request(&frame).map_err(|e| format!("malformed request: {e}"))?;
        let permit = Arc::clone(&in_flight)
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let serving = max_in_flight - in_flight.available_permits();
        port.stats
            .peak_in_flight
            .fetch_max(serving, Ordering::Relaxed);
        let (gateway, replies) = (Rc::clone(&gateway), replies.clone());
        actix::spawn(async move {
            if request == Request::Backup {
                stream_backup(&gateway, &replies).await;
            } else {
                let _ = replies.send(answer(&gateway, request).await).await;
            }
            drop(permit);
        });
    }
    drop(replies);
    let _ = writer.await;
    Ok(())
}

fn check_hello(
    auth: &ClientPort,
    version: u16,
    cluster: &str,
    token: Option<&str>,
) -> Option<String> {
    if version != CLIENT_PROTOCOL_VERSION {
        return Some(format!(
            "client protocol {version}, this node speaks {CLIENT_PROTOCOL_VERSION}"
        ));
    }
    if cluster != auth.cluster {
        return Some(format!(
            "this node is in cluster {:?}, not {cluster:?}",
            auth.cluster
        ));
    }
    match (&auth.token, token) {
        (Some(expected), Some(given)) if expected == given => None,
        (Some(_), _) => Some("missing or wrong client token".to_owned()),
        (None, _) => None,
    }
}

async fn answer(gateway: &Gateway, request: Request) -> Reply {
    match request {
        Request::Submit { id, payload } => match gateway.submit_as(id, payload).await {
            Ok(payload) => Reply::Response { id, payload },
            Err(error) => Reply::Failed {
                id,
                error: Failure::from(&error),
            },
        },
        Request::Query { tag, payload } => match gateway.query(payload).await {
            Ok(payload) => Reply::QueryAnswer { tag, payload },
            Err(error) => Reply::QueryFailed {
                tag,
                error: Failure::from(&error),
            },
        },
        Request::Read { tag, payload } => match gateway.read(payload).await {
            Ok(payload) => Reply::QueryAnswer { tag, payload },
            Err(error) => Reply::QueryFailed {
                tag,
                error: Failure::from(&error),
            },
        },
        Request::Decide { tag, name, value } => {
            let decided = match value {
                Some(value) => gateway.decide(name, value).await.map(Some),
                None => gateway.decided(name).await,
            };
            match decided {
                Ok(value) => Reply::Decision { tag, value },
                Err(error) => Reply::QueryFailed {
                    tag,
                    error: Failure::from(&error),
                },
            }
        }
        Request::Status => Reply::Status(report(gateway.status().await)),
        Request::Hello { .. } => Reply::Refused {
            reason: "hello sent twice".into(),
        },
        Request::Backup => unreachable!("streamed by stream_backup"),
    }
}

/// Take a fresh snapshot and stream its file. The reply queue is bounded,
/// so a slow client slows the reading, not the node's memory.
async fn stream_backup(gateway: &Gateway, replies: &mpsc::Sender<Reply>) {
    let failed = |reason: String| Reply::BackupFailed { reason };
    let snapshot = match gateway.backup().await {
        Ok(snapshot) => snapshot,
        Err(reason) => {
            let _ = replies.send(failed(reason)).await;
            return;
        }
    };
    let mut file = match snapshot.open_file() {
        Ok(file) => file,
        Err(error) => {
            let _ = replies.send(failed(error.to_string())).await;
            return;
        }
    };
    let total = snapshot.file_len();
    let mut offset = 0;
    while offset < total {
        let mut data = Vec::with_capacity(BACKUP_CHUNK);
        let read = Read::by_ref(&mut file)
            .take(BACKUP_CHUNK as u64)
            .read_to_end(&mut data);
        let reply = match read {
            Ok(0) => failed(format!(
                "the snapshot file ended at byte {offset} of {total}"
            )),
            Ok(_) => Reply::BackupChunk {
                upto: snapshot.upto,
                offset,
                total,
                data,
            },
            Err(error) => failed(error.to_string()),
        };
        let last = !matches!(reply, Reply::BackupChunk { .. });
        if let Reply::BackupChunk { data, .. } = &reply {
            offset += data.len() as u64;
        }
        if replies.send(reply).await.is_err() || last {
            return;
        }
    }
}

fn report(status: NodeStatus) -> StatusReport {
    StatusReport {
        node: status.node,
        roles: status.roles.iter().map(ToString::to_string).collect(),
        proposers: status
            .proposers
            .iter()
            .map(|p| ProposerReport {
                id: p.id.to_string(),
                leader: p.leader,
                ballot: p.leading_ballot.map(|b| (b.round, b.proposer)),
                decided_upto: p.first_unchosen,
            })
            .collect(),
        learners: status
            .learners
            .iter()
            .map(|l| LearnerReport {
                id: l.id.to_string(),
                applied: l.applied,
                decided: l.decided as u64,
            })
            .collect(),
        stopped: status.stopped.iter().map(ToString::to_string).collect(),
    }
}

/// Client frames: a 4-byte length, then a postcard request or reply.
fn client_codec(max_frame: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_type::<u32>()
        .max_frame_length(max_frame)
        .new_codec()
}

fn decode_request(frame: &[u8]) -> Result<Request, postcard::Error> {
    postcard::from_bytes(frame)
}

fn encode_reply(reply: &Reply) -> bytes::Bytes {
    postcard::to_stdvec(reply)
        .expect("encoding into a Vec cannot fail")
        .into()
}
