//! One actix actor per remote node: queues outbound messages (bounded),
//! connects with exponential backoff and jitter, authenticates, and writes
//! queued frames in coalesced batches.
//!
//! ```text
//! roles ──Outbound──▶ PeerLink actor ──encode──▶ bounded queue ──▶ link task:
//!                                       (full: drop + count)        connect, handshake,
//!                                                                    write many frames per syscall,
//!                                                                    reconnect on failure
//! ```
//!
//! Messages queued while the peer is down wait in the queue; when it is
//! full, new ones are dropped and counted (Paxos tolerates loss; memory
//! must not grow without bound).

use crate::config::TransportConfig;
use crate::envelope::{Envelope, PROTOCOL_VERSION, encode_frame, frame_codec};
use crate::error::TransportError;
use crate::handshake::handshake;
use crate::stats::{PeerStats, TransportStats};
use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use serde::Serialize;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;
use synod_core::RoleId;
use synod_tls::BoxStream;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

/// A message for a role instance on the link's node.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Outbound<M> {
    /// The sending role instance (on this node).
    pub from: RoleId,
    /// The destination role instance (on the peer).
    pub to: RoleId,
    /// The message.
    pub message: M,
}

/// Several messages at once (one mailbox trip).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct OutboundBatch<M>(pub Vec<Outbound<M>>);

/// Flush what is queued (within the shutdown timeout), close the
/// connection, and stop the actor.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// The actor owning the link to one peer node.
pub struct PeerLink<M> {
    peer: String,
    config: Arc<TransportConfig>,
    stats: Arc<TransportStats>,
    /// This peer's counters in `stats`.
    traffic: Arc<PeerStats>,
    queue: Option<mpsc::Sender<Bytes>>,
    shutdown: CancellationToken,
    stopped: Option<oneshot::Receiver<()>>,
    _message: PhantomData<fn(M)>,
}

impl<M: Serialize + Unpin + 'static> PeerLink<M> {
    /// A link from this node (`config.node`) to `peer`, whose address is in
    /// `config.peers`.
    pub fn new(
        peer: impl Into<String>,
        config: Arc<TransportConfig>,
        stats: Arc<TransportStats>,
    ) -> Self {
        let peer = peer.into();
        Self {
            traffic: stats.peer(&peer),
            peer,
            config,
            stats,
            queue: None,
            shutdown: CancellationToken::new(),
            stopped: None,
            _message: PhantomData,
        }
    }

    fn enqueue(&mut self, outbound: Outbound<M>) {
        let envelope = Envelope {
            version: PROTOCOL_VERSION,
            cluster: &self.config.cluster_id,
            sender: &self.config.node,
            from: outbound.from,
            to: outbound.to,
            message: outbound.message,
        };
        let frame = match encode_frame(&envelope, self.config.max_frame_len) {
            Ok(frame) => frame,
            Err(e) => {
                // The roles bound every message that grows with history, so
                // this is a bug or a misconfigured limit: loud, and counted.
                TransportStats::bump(&self.stats.dropped_unencodable);
                tracing::error!(peer = %self.peer, error = %e, "message dropped: it cannot be sent");
                return;
            }
        };
        let Some(queue) = &self.queue else { return };
        let traffic = &self.traffic;
        if queue.try_send(frame).is_err() {
            TransportStats::bump(&self.stats.dropped_queue_full);
            TransportStats::bump(&traffic.dropped_queue_full);
        }
        let depth = queue.max_capacity() - queue.capacity();
        traffic
            .queued
            .store(depth as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

impl<M: Serialize + Unpin + 'static> Actor for PeerLink<M> {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        let (sender, receiver) = mpsc::channel(self.config.queue_capacity);
        let (done_tx, done_rx) = oneshot::channel();
        self.queue = Some(sender);
        self.stopped = Some(done_rx);
        let shutdown = self.shutdown.clone();
        let task = LinkTask {
            peer: self.peer.clone(),
            config: Arc::clone(&self.config),
            stats: Arc::clone(&self.stats),
        };
        actix::spawn(async move {
            task.run(receiver, shutdown).await;
            let _ = done_tx.send(());
        });
    }
}

impl<M: Serialize + Unpin + 'static> Handler<Outbound<M>> for PeerLink<M> {
    type Result = ();

    fn handle(&mut self, outbound: Outbound<M>, _ctx: &mut Context<Self>) {
        self.enqueue(outbound);
    }
}

impl<M: Serialize + Unpin + 'static> Handler<OutboundBatch<M>> for PeerLink<M> {
    type Result = ();

    fn handle(&mut self, batch: OutboundBatch<M>, _ctx: &mut Context<Self>) {
        for outbound in batch.0 {
            self.enqueue(outbound);
        }
    }
}

impl<M: Serialize + Unpin + 'static> Handler<Shutdown> for PeerLink<M> {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Shutdown, _ctx: &mut Context<Self>) -> Self::Result {
        // Closing the queue tells a connected task to flush what is left and
        // close; the token stops one that is waiting to reconnect.
        self.queue.take();
        self.shutdown.cancel();
        let stopped = self.stopped.take();
        let limit = self.config.shutdown_timeout;
        Box::pin(
            async move {
                if let Some(stopped) = stopped {
                    let _ = tokio::time::timeout(limit, stopped).await;
                }
            }
            .into_actor(self)
            .map(|(), _, ctx| ctx.stop()),
        )
    }
}

/// The connection loop behind one link.
struct LinkTask {
    peer: String,
    config: Arc<TransportConfig>,
    stats: Arc<TransportStats>,
}

/// Most frames taken from the queue for one write.
const COALESCE: usize = 1024;

impl LinkTask {
    async fn run(self, mut queue: mpsc::Receiver<Bytes>, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(self.config.reconnect_min, self.config.reconnect_max);
        loop {
            // A connection attempt in progress is allowed to finish (it is
            // bounded by timeouts) so a shutdown can still flush the queue.
            match self.connect().await {
                Ok(stream) => {
                    backoff.reset();
                    TransportStats::bump(&self.stats.connects);
                    tracing::info!(node = %self.config.node, peer = %self.peer, "link up");
                    match self.pump(stream, &mut queue).await {
                        Ok(()) => return,
                        Err(e) => {
                            tracing::info!(node = %self.config.node, peer = %self.peer, error = %e, "link lost; reconnecting")
                        }
                    }
                }
                Err(e) => tracing::debug!(peer = %self.peer, error = %e, "connect failed"),
            }
            tokio::select! {
                () = tokio::time::sleep(backoff.next_delay()) => {}
                () = shutdown.cancelled() => return, // peer unreachable: nothing can be flushed
            }
        }
    }

    async fn connect(&self) -> Result<BoxStream, TransportError> {
        let address = self
            .config
            .peers
            .get(&self.peer)
            .ok_or_else(|| TransportError::UnknownNode(self.peer.clone()))?;
        let timeout = self.config.handshake_timeout;
        let stream = tokio::time::timeout(timeout, TcpStream::connect(address.as_str()))
            .await
            .map_err(|_| TransportError::HandshakeTimeout(timeout))??;
        stream.set_nodelay(true)?;
        let stream: BoxStream = match &self.config.tls {
            // The server's certificate must name the peer dialled.
            Some(tls) => tokio::time::timeout(timeout, tls.connect(&self.peer, stream))
                .await
                .map_err(|_| TransportError::HandshakeTimeout(timeout))?
                .map_err(TransportError::Tls)?,
            None => Box::new(stream),
        };
        let mut framed = Framed::new(stream, frame_codec(self.config.max_frame_len));
        handshake(&mut framed, &self.config, Some(&self.peer)).await?;
        Ok(framed.into_inner())
    }

    /// Write queued frames, many per write, until the queue closes (then
    /// flush and close: `Ok`) or the connection fails (`Err`).
    async fn pump(
        &self,
        mut stream: BoxStream,
        queue: &mut mpsc::Receiver<Bytes>,
    ) -> Result<(), TransportError> {
        let mut frames = Vec::with_capacity(COALESCE);
        let mut buffer = BytesMut::new();
        let traffic = self.stats.peer(&self.peer);
        loop {
            let taken = queue.recv_many(&mut frames, COALESCE).await;
            traffic
                .queued
                .store(queue.len() as u64, std::sync::atomic::Ordering::Relaxed);
            if taken == 0 {
                stream.flush().await?;
                stream.shutdown().await?;
                return Ok(());
            }
            buffer.clear();
            for frame in frames.drain(..) {
                buffer.extend_from_slice(&frame);
                TransportStats::bump(&self.stats.frames_sent);
                TransportStats::bump(&traffic.frames_sent);
            }
            stream.write_all(&buffer).await?;
            TransportStats::add(&traffic.bytes_sent, buffer.len());
        }
    }
}

/// Exponential backoff with full jitter.
struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            current: min,
        }
    }

    fn reset(&mut self) {
        self.current = self.min;
    }

    fn next_delay(&mut self) -> Duration {
        let ceiling = self.current;
        self.current = (self.current * 2).min(self.max);
        let mut bytes = [0u8; 8];
        let _ = getrandom::fill(&mut bytes);
        let fraction = (u64::from_le_bytes(bytes) % 1_000) as f64 / 1_000.0;
        self.min + (ceiling.saturating_sub(self.min)).mul_f64(fraction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_ceiling_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(80));
        for _ in 0..10 {
            let d = b.next_delay();
            assert!(
                d >= Duration::from_millis(10) && d <= Duration::from_millis(80),
                "{d:?}"
            );
        }
        assert_eq!(b.current, Duration::from_millis(80));
        b.reset();
        assert_eq!(b.current, Duration::from_millis(10));
    }
}
