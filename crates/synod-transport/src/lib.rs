//! # synod-transport: framed, authenticated TCP between Synod nodes
//!
//! This crate owns every byte Synod puts on a socket between nodes:
//!
//! - **Framing** ([`frame_codec`]): tokio-util's `LengthDelimitedCodec`,
//!   4-byte big-endian length, an explicit maximum frame length. A longer
//!   length closes the connection before anything is allocated.
//! - **Envelope** ([`Envelope`]): postcard of
//!   `{ version: u16, cluster: str, sender: str, from: RoleId, to: RoleId, message }`.
//!   Message tags are postcard enum indexes, pinned by tests here and in
//!   synod-core.
//! - **Handshake** ([`handshake()`]): version, cluster id, node name and an
//!   HMAC-SHA256 challenge-response over fresh nonces in both directions;
//!   the secret never crosses the wire.
//! - **TLS** (optional, [`TransportConfig::tls`], synod-tls): mutual TLS
//!   under the handshake; a peer's certificate must name the node it
//!   dialled or claims to be.
//! - **Peer links** ([`PeerLink`]): one actix actor per remote node, a
//!   bounded queue (full: drop and count), reconnect with exponential
//!   backoff and jitter, TCP_NODELAY, many frames per write.
//! - **Listener** ([`Listener`]): accepts, authenticates, checks each
//!   envelope, and hands messages to a router `Recipient<Inbound<M>>`.
//!
//! ```text
//! node A                                           node B
//! role ─Outbound─▶ PeerLink(B) ══TCP: frames══▶ Listener ─Inbound─▶ router ─▶ role
//! ```
//!
//! Each direction between two nodes uses its own connection: A's link to B
//! carries A → B traffic, B's link to A the other way.
//!
//! The transport is generic over the message type `M`; Synod uses
//! `synod_core::Message`.
#![deny(missing_docs)]

mod config;
mod envelope;
mod error;
mod handshake;
mod link;
mod listener;
mod stats;

pub use config::{DEFAULT_MAX_FRAME, TransportConfig};
pub use envelope::{Envelope, PROTOCOL_VERSION, decode_envelope, encode_frame, frame_codec};
pub use error::TransportError;
pub use handshake::{HANDSHAKE_FRAME_MAX, handshake};
pub use link::{Outbound, OutboundBatch, PeerLink, Shutdown};
pub use listener::{Inbound, Listener, MAX_UNAUTHENTICATED, StopListening};
pub use stats::{PeerStats, TransportStats};
