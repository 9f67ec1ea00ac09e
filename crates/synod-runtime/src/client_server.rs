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
use crate::submissions::Submissions;
use futures_util::stream::{FuturesUnordered, SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use std::io::Read;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use synod_api::SubmitError;
use synod_api::wire::{
    BACKUP_CHUNK, CLIENT_PROTOCOL_VERSION, Failure, LearnerReport, MAX_CLIENT_FRAME,
    ProposerReport, Reply, Request, StatusReport,
};
use synod_core::{Command, CommandId};
use synod_roles::{AnswerQueue, CommandAnswer, LeaderHint};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

/// A client that has not said hello by then is dropped.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest frame read before the hello is accepted (a hello holds a
/// version, the cluster id and the token).
pub const HELLO_FRAME_MAX: usize = 4096;
/// Most client connections waiting for their hello at once.
pub const MAX_UNAUTHENTICATED: usize = 64;
/// Backup chunks (of `BACKUP_CHUNK` bytes) read ahead of the connection's
/// writes.
const BACKUP_QUEUE: usize = 4;

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
    let (sink, frames) = framed.split();
    serve_requests(gateway, port, sink, frames).await
}

type ClientFrames = SplitStream<Framed<synod_tls::BoxStream, LengthDelimitedCodec>>;
type ClientSink = SplitSink<Framed<synod_tls::BoxStream, LengthDelimitedCodec>, bytes::Bytes>;

/// Serve one authenticated connection's requests, at most `max_in_flight`
/// at once. They all run inside this one task. Commands are kept in one
/// table ([`Submissions`]) and answered through one queue, so a batch of
/// answers costs one wakeup; every other request is a future in
/// `serving`, polled when its answer arrives. Every answer ready at a
/// wakeup goes out in one write; while a write waits for the client to
/// read, no new request is read either.
async fn serve_requests(
    gateway: Rc<Gateway>,
    port: &ClientPort,
    mut sink: ClientSink,
    mut frames: ClientFrames,
) -> Result<(), String> {
    let (max_in_flight, idle_timeout) = (port.limits.max_in_flight, port.limits.idle_timeout);
    let mut serving = FuturesUnordered::new();
    let mut commands = Submissions::new(gateway.submit_retry, gateway.submit_timeout);
    let (answers, mut answer_queue) = mpsc::unbounded_channel();
    // The one timer for the commands' resends and deadlines.
    let alarm = tokio::time::sleep(idle_timeout);
    tokio::pin!(alarm);
    // A backup streams its chunks through here.
    let (chunks, mut chunk_queue) = mpsc::channel::<Reply>(BACKUP_QUEUE);
    // One timer for the connection, not one per frame: when it fires, the
    // connection is idle if nothing is in service and nothing was heard
    // for `idle_timeout`; otherwise it is set again.
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    let mut last_heard = Instant::now();
    // Until the client closes its side; what it asked before is still
    // answered.
    let mut reading = true;
    loop {
        // Held for as long as the learner answering here is the same one.
        let hint = gateway.leader_hint();
        let leader_changed = leader_change(hint.as_deref());
        tokio::pin!(leader_changed);
        loop {
            let in_service = serving.len() + commands.len();
            if !reading && in_service == 0 {
                return Ok(());
            }
            tokio::select! {
                biased;
                Some(first) = answer_queue.recv() => {
                    let replies = answered(&gateway, &mut commands, first, &mut answer_queue, &answers);
                    write_replies(&mut sink, replies).await?;
                }
                Some(reply) = serving.next(), if !serving.is_empty() => {
                    let mut ready = Vec::from_iter(reply); // none for a backup
                    while let Some(Some(reply)) = serving.next().now_or_never() {
                        ready.extend(reply);
                    }
                    write_replies(&mut sink, ready).await?;
                }
                Some(chunk) = chunk_queue.recv() => write_replies(&mut sink, vec![chunk]).await?,
                () = &mut leader_changed => {
                    gateway.resend(commands.resend_all(Instant::now()), &answers);
                    set_alarm(alarm.as_mut(), &commands);
                    break; // watch the hint again
                }
                () = &mut alarm, if commands.alarm().is_some() => {
                    let replies = due(&gateway, &mut commands, &answers);
                    set_alarm(alarm.as_mut(), &commands);
                    write_replies(&mut sink, replies).await?;
                    if !same_hint(hint.as_ref(), gateway.leader_hint().as_ref()) {
                        break; // the learner here changed
                    }
                }
                frame = frames.next(), if reading && in_service < max_in_flight => {
                    // This frame and every other one already read, while
                    // there is room: one turn of this loop per read, not
                    // per request.
                    let mut next = Some(frame);
                    let mut refused = Vec::new();
                    while let Some(frame) = next.take() {
                        let request = match frame {
                            None => {
                                reading = false;
                                break;
                            }
                            Some(Err(e)) => return Err(e.to_string()),
                            Some(Ok(frame)) => decode_request(&frame)
                                .map_err(|e| format!("malformed request: {e}"))?,
                        };
                        if let Request::Submit { id, payload } = request {
                            let command = Command { id, payload };
                            refused.extend(submit(&gateway, &mut commands, command, &answers));
                        } else {
                            serving.push(serve_one(Rc::clone(&gateway), request, chunks.clone()));
                        }
                        if serving.len() + commands.len() < max_in_flight {
                            next = frames.next().now_or_never();
                        }
                    }
                    last_heard = Instant::now();
                    set_alarm(alarm.as_mut(), &commands);
                    let in_service = serving.len() + commands.len();
                    port.stats.peak_in_flight.fetch_max(in_service, Ordering::Relaxed);
                    write_replies(&mut sink, refused).await?;
                }
                () = &mut idle => {
                    let now = Instant::now();
                    let quiet = serving.is_empty() && commands.is_empty();
                    if quiet && now >= last_heard + idle_timeout {
                        port.stats.closed_idle.fetch_add(1, Ordering::Relaxed);
                        return Ok(());
                    }
                    // Quiet, but still waiting for answers: not idle.
                    let from = if quiet { last_heard } else { now };
                    idle.as_mut().reset(from + idle_timeout);
                }
            }
        }
    }
}

/// Hand `command` on; the reply at once if it was refused.
fn submit(
    gateway: &Gateway,
    commands: &mut Submissions,
    command: Command,
    answers: &AnswerQueue,
) -> Option<Reply> {
    let id = command.id;
    // Kept for resends: the intake takes the command itself.
    let kept = command.clone();
    match gateway.enqueue(command, answers) {
        Ok(()) => {
            commands.add(kept, Instant::now());
            None
        }
        Err(error) => Some(Reply::Failed {
            id,
            error: Failure::from(&error),
        }),
    }
}

/// The replies to `first` and every other answer already queued. A
/// command given up on (refused, or failed for any reason) is no longer
/// watched for.
fn answered(
    gateway: &Gateway,
    commands: &mut Submissions,
    first: (CommandId, CommandAnswer),
    queue: &mut mpsc::UnboundedReceiver<(CommandId, CommandAnswer)>,
    answers: &AnswerQueue,
) -> Vec<Reply> {
    let mut replies = Vec::new();
    let mut failed = Vec::new();
    let mut next = Some(first);
    while let Some((id, answer)) = next {
        if let Some((copies, started)) = commands.answered(id) {
            gateway.record_answer(started.elapsed());
            if answer.is_err() {
                failed.push(id);
            }
            replies.extend(std::iter::repeat_n(reply_to(id, answer), copies as usize));
        }
        next = queue.try_recv().ok();
    }
    gateway.unwatch(failed, answers);
    replies
}

/// The resends and timeouts due now: resends go, timeouts are answered.
fn due(gateway: &Gateway, commands: &mut Submissions, answers: &AnswerQueue) -> Vec<Reply> {
    let due = commands.due(Instant::now());
    gateway.resend(due.resend, answers);
    let timeout = SubmitError::Timeout(gateway.submit_timeout);
    let replies = due
        .expired
        .iter()
        .flat_map(|&(id, copies)| {
            std::iter::repeat_n(reply_to(id, Err(timeout.clone())), copies as usize)
        })
        .collect();
    gateway.unwatch(due.expired.into_iter().map(|(id, _)| id).collect(), answers);
    replies
}

fn reply_to(id: CommandId, answer: CommandAnswer) -> Reply {
    match answer {
        Ok(payload) => Reply::Response { id, payload },
        Err(error) => Reply::Failed {
            id,
            error: Failure::from(&error),
        },
    }
}

/// Set the commands' timer to their next alarm (left as it is if none).
fn set_alarm(alarm: std::pin::Pin<&mut tokio::time::Sleep>, commands: &Submissions) {
    if let Some(at) = commands.alarm().filter(|&at| at != alarm.deadline()) {
        alarm.reset(at);
    }
}

/// Resolves at the next change of leader `hint` sees (never without one).
async fn leader_change(hint: Option<&LeaderHint>) {
    match hint {
        Some(hint) => hint.changed().await,
        None => std::future::pending().await,
    }
}

fn same_hint(a: Option<&Rc<LeaderHint>>, b: Option<&Rc<LeaderHint>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Rc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// One request's reply (none for a backup, which streams its chunks).
async fn serve_one(
    gateway: Rc<Gateway>,
    request: Request,
    chunks: mpsc::Sender<Reply>,
) -> Option<Reply> {
    if request == Request::Backup {
        stream_backup(&gateway, &chunks).await;
        return None;
    }
    Some(answer(&gateway, request).await)
}

/// Write `replies` in one flush: one syscall per wakeup, not per reply.
async fn write_replies(sink: &mut ClientSink, replies: Vec<Reply>) -> Result<(), String> {
    if replies.is_empty() {
        return Ok(());
    }
    for reply in replies {
        sink.feed(encode_reply(&reply))
            .await
            .map_err(|e| e.to_string())?;
    }
    sink.flush().await.map_err(|e| e.to_string())
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
        Request::Members { tag } => match gateway.members().await {
            Ok(members) => Reply::Members { tag, members },
            Err(reason) => Reply::Reconfiguring {
                tag,
                refused: Some(reason),
            },
        },
        Request::Reconfigure {
            tag,
            epoch,
            members,
        } => Reply::Reconfiguring {
            tag,
            refused: gateway.reconfigure(epoch, members).await.err(),
        },
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

/// One allocation at the reply's size (a batch of replies grows no
/// buffer step by step).
fn encode_reply(reply: &Reply) -> bytes::Bytes {
    let len = postcard::experimental::serialized_size(reply).expect("sizing a reply cannot fail");
    postcard::to_extend(reply, Vec::with_capacity(len))
        .expect("encoding into a Vec cannot fail")
        .into()
}
