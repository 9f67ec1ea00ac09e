//! Transport settings: who this node is, who its peers are, and the limits.

use std::collections::BTreeMap;
use std::time::Duration;

/// Default largest frame: 4 MiB.
pub const DEFAULT_MAX_FRAME: usize = 4 * 1024 * 1024;

/// How one node's transport behaves.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// The cluster's id; peers with another id are refused.
    pub cluster_id: String,
    /// This node's name.
    pub node: String,
    /// The shared cluster secret proven (never sent) in the handshake.
    pub secret: Vec<u8>,
    /// The nodes this node accepts connections from and connects to, each
    /// with its `host:port` (a name is resolved at every connect, so a
    /// peer whose address changes, as a restarted pod's does, is found).
    pub peers: BTreeMap<String, String>,
    /// Largest frame accepted or sent, in bytes.
    pub max_frame_len: usize,
    /// Frames queued per peer before new ones are dropped.
    pub queue_capacity: usize,
    /// A peer that has not completed the handshake by then is dropped.
    pub handshake_timeout: Duration,
    /// First reconnect delay; doubles up to `reconnect_max`, with jitter.
    pub reconnect_min: Duration,
    /// Largest reconnect delay.
    pub reconnect_max: Duration,
    /// How long a clean shutdown waits to flush a link.
    pub shutdown_timeout: Duration,
    /// Mutual TLS on every link (none: plain TCP, authenticated by the
    /// HMAC handshake alone).
    pub tls: Option<synod_tls::NodeTls>,
    /// The settings every node of the cluster must share (name, value),
    /// compared with each peer's after the handshake proves it: a peer
    /// with any other value is refused, naming the setting.
    pub cluster_settings: Vec<(String, String)>,
}

impl TransportConfig {
    /// Settings with sensible limits for `node` of `cluster_id`.
    pub fn new(
        cluster_id: impl Into<String>,
        node: impl Into<String>,
        secret: impl Into<Vec<u8>>,
    ) -> Self {
        Self {
            cluster_id: cluster_id.into(),
            node: node.into(),
            secret: secret.into(),
            peers: BTreeMap::new(),
            max_frame_len: DEFAULT_MAX_FRAME,
            queue_capacity: 65_536,
            handshake_timeout: Duration::from_secs(5),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(5),
            cluster_settings: Vec::new(),
            tls: None,
        }
    }

    /// Add peer `name` at `address` (a `SocketAddr` or `host:port`).
    pub fn with_peer(mut self, name: impl Into<String>, address: impl ToString) -> Self {
        self.peers.insert(name.into(), address.to_string());
        self
    }
}
