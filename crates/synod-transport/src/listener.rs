//! The listener actor: accepts inbound connections, authenticates them,
//! and hands every decoded message to the router.
//!
//! Each connection runs in its own task: handshake (under a timeout), then
//! frames → envelope checks → `router.do_send(Inbound)`. Anything hostile
//! (bad handshake, oversized length, garbage, wrong version or cluster)
//! closes that one connection; a frame claiming another sender is dropped
//! and counted. The listener and every other connection keep serving.
//!
//! Before authentication a connection costs at most one handshake frame
//! ([`crate::HANDSHAKE_FRAME_MAX`]) for at most `handshake_timeout`, and
//! at most [`MAX_UNAUTHENTICATED`] connections are in their handshake at
//! once: past that, a new one is closed on arrival (and counted), so
//! strangers cannot hold more than about 4 MiB of a node's memory.

use crate::config::TransportConfig;
use crate::envelope::{Envelope, PROTOCOL_VERSION, decode_envelope, frame_codec};
use crate::error::TransportError;
use crate::handshake::handshake;
use crate::stats::{PeerStats, TransportStats};
use actix::prelude::*;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::sync::Arc;
use synod_core::RoleId;
use synod_tls::BoxStream;
use synod_tls::rustls::pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::codec::Framed;

/// A message that arrived from an authenticated peer.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Inbound<M> {
    /// The node it came from (authenticated).
    pub node: Arc<str>,
    /// The sending role instance.
    pub from: RoleId,
    /// The destination role instance on this node.
    pub to: RoleId,
    /// The message.
    pub message: M,
}

/// Stop accepting and close inbound connections (every connection task
/// belongs to the actor's context and ends with it).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopListening;

/// Most inbound connections in their handshake at once.
pub const MAX_UNAUTHENTICATED: usize = 64;

/// Accepts inbound connections for one node.
pub struct Listener<M: Send + 'static> {
    listener: Option<TcpListener>,
    unauthenticated: Arc<Semaphore>,
    config: Arc<TransportConfig>,
    stats: Arc<TransportStats>,
    router: Recipient<Inbound<M>>,
}

impl<M: DeserializeOwned + Send + 'static> Listener<M> {
    /// Bind `address`. Errors (port in use, bad address) come back here,
    /// before any actor starts.
    pub async fn bind(
        address: SocketAddr,
        config: Arc<TransportConfig>,
        stats: Arc<TransportStats>,
        router: Recipient<Inbound<M>>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(address).await?;
        Ok(Self {
            listener: Some(listener),
            unauthenticated: Arc::new(Semaphore::new(MAX_UNAUTHENTICATED)),
            config,
            stats,
            router,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.as_ref().expect("bound").local_addr()
    }
}

/// A connection accepted by the accept loop.
#[derive(Message)]
#[rtype(result = "()")]
struct Accepted(TcpStream, SocketAddr);

impl<M: DeserializeOwned + Send + 'static> Actor for Listener<M> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let listener = self.listener.take().expect("bound");
        let me = ctx.address();
        ctx.spawn(
            async move {
                loop {
                    match listener.accept().await {
                        Ok((stream, peer)) => me.do_send(Accepted(stream, peer)),
                        Err(e) => tracing::warn!(error = %e, "accept failed"),
                    }
                }
            }
            .into_actor(self),
        );
    }
}

impl<M: DeserializeOwned + Send + 'static> Handler<Accepted> for Listener<M> {
    type Result = ();

    fn handle(&mut self, Accepted(stream, address): Accepted, ctx: &mut Context<Self>) {
        let Ok(permit) = Arc::clone(&self.unauthenticated).try_acquire_owned() else {
            TransportStats::bump(&self.stats.refused_unauthenticated);
            tracing::warn!(%address, "too many connections in their handshake; closed");
            return;
        };
        let connection = Connection {
            config: Arc::clone(&self.config),
            stats: Arc::clone(&self.stats),
            router: self.router.clone(),
        };
        let node = self.config.node.clone();
        ctx.spawn(
            async move {
                if let Err(e) = connection.serve(stream, permit).await {
                    tracing::warn!(node = %node, %address, reason = %e, "inbound connection closed");
                }
            }
            .into_actor(self),
        );
    }
}

impl<M: DeserializeOwned + Send + 'static> Handler<StopListening> for Listener<M> {
    type Result = ();

    fn handle(&mut self, _: StopListening, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

struct Connection<M: Send + 'static> {
    config: Arc<TransportConfig>,
    stats: Arc<TransportStats>,
    router: Recipient<Inbound<M>>,
}

impl<M: DeserializeOwned + Send + 'static> Connection<M> {
    /// Authenticate, then serve frames. `permit` is the connection's
    /// place among the unauthenticated ones, given back once it is known.
    async fn serve(
        self,
        stream: TcpStream,
        permit: OwnedSemaphorePermit,
    ) -> Result<(), TransportError> {
        stream.set_nodelay(true)?;
        let (stream, certificate) = match self.secure(stream).await {
            Ok(secured) => secured,
            Err(e) => {
                TransportStats::bump(&self.stats.handshakes_refused);
                return Err(e);
            }
        };
        let mut framed = Framed::new(stream, frame_codec(self.config.max_frame_len));
        let peer: Arc<str> = match handshake(&mut framed, &self.config, None).await {
            Ok(peer)
                if certificate
                    .as_ref()
                    .is_none_or(|c| synod_tls::names(c, &peer)) =>
            {
                peer.into()
            }
            Ok(claimed) => {
                TransportStats::bump(&self.stats.handshakes_refused);
                return Err(TransportError::CertificateName { claimed });
            }
            Err(e) => {
                TransportStats::bump(&self.stats.handshakes_refused);
                return Err(e);
            }
        };
        drop(permit);
        let traffic = self.stats.peer(&peer);
        traffic
            .inbound_open
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let served = self.serve_frames(&peer, &traffic, &mut framed).await;
        traffic
            .inbound_open
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        served
    }

    /// TLS first when the cluster uses it (within the handshake timeout):
    /// the stream, and the certificate the peer presented.
    async fn secure(
        &self,
        stream: TcpStream,
    ) -> Result<(BoxStream, Option<CertificateDer<'static>>), TransportError> {
        let Some(tls) = &self.config.tls else {
            return Ok((Box::new(stream), None));
        };
        let timeout = self.config.handshake_timeout;
        let (stream, certificate) = tokio::time::timeout(timeout, tls.accept(stream))
            .await
            .map_err(|_| TransportError::HandshakeTimeout(timeout))?
            .map_err(TransportError::Tls)?;
        Ok((stream, Some(certificate)))
    }

    async fn serve_frames(
        &self,
        peer: &Arc<str>,
        traffic: &PeerStats,
        framed: &mut Framed<BoxStream, tokio_util::codec::LengthDelimitedCodec>,
    ) -> Result<(), TransportError> {
        while let Some(frame) = framed.next().await {
            let result = frame.map_err(TransportError::from).and_then(|frame| {
                TransportStats::bump(&traffic.frames_received);
                TransportStats::add(&traffic.bytes_received, frame.len());
                self.deliver(peer, &frame)
            });
            if let Err(e) = result {
                TransportStats::bump(&self.stats.connections_closed_hostile);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Check one frame's envelope and hand its message to the router.
    fn deliver(&self, peer: &Arc<str>, frame: &[u8]) -> Result<(), TransportError> {
        let envelope: Envelope<'_, M> = decode_envelope(frame)?;
        if envelope.version != PROTOCOL_VERSION {
            return Err(TransportError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: envelope.version,
            });
        }
        if envelope.cluster != self.config.cluster_id {
            return Err(TransportError::ClusterMismatch {
                ours: self.config.cluster_id.clone(),
                theirs: envelope.cluster.into(),
            });
        }
        if envelope.sender != &**peer {
            TransportStats::bump(&self.stats.dropped_spoofed);
            tracing::warn!(
                peer = &**peer,
                claimed = envelope.sender,
                "frame with a spoofed sender dropped"
            );
            return Ok(());
        }
        TransportStats::bump(&self.stats.frames_received);
        self.router.do_send(Inbound {
            node: Arc::clone(peer),
            from: envelope.from,
            to: envelope.to,
            message: envelope.message,
        });
        Ok(())
    }
}
