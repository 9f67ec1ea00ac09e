//! Counters a node exports about its links.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Transport counters, shared by a node's links and listener.
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Frames written to peers.
    pub frames_sent: AtomicU64,
    /// Frames received and handed to the router.
    pub frames_received: AtomicU64,
    /// Messages dropped because a peer's queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Messages dropped because they could not be encoded into one frame
    /// (larger than `max_frame_len`).
    pub dropped_unencodable: AtomicU64,
    /// Frames dropped because their sender was not the authenticated node.
    pub dropped_spoofed: AtomicU64,
    /// Inbound connections refused during the handshake.
    pub handshakes_refused: AtomicU64,
    /// Inbound connections closed at once because
    /// [`crate::MAX_UNAUTHENTICATED`] others were still in their handshake.
    pub refused_unauthenticated: AtomicU64,
    /// Authenticated connections closed for a malformed or hostile frame.
    pub connections_closed_hostile: AtomicU64,
    /// Successful outbound connections (first connect and reconnects).
    pub connects: AtomicU64,
    /// The same, per peer node (one entry per peer ever seen: bounded by
    /// the config's nodes, since only authenticated peers get one).
    peers: Mutex<BTreeMap<Arc<str>, Arc<PeerStats>>>,
}

/// Counters of the traffic with one peer node.
#[derive(Debug, Default)]
pub struct PeerStats {
    /// Authenticated inbound connections from it open now. A peer process
    /// that dies closes its sockets, so this drops at once, even on a link
    /// nothing is sent over.
    pub inbound_open: AtomicU64,
    /// Frames written to it.
    pub frames_sent: AtomicU64,
    /// Bytes written to it (frames with their length prefixes).
    pub bytes_sent: AtomicU64,
    /// Frames received from it.
    pub frames_received: AtomicU64,
    /// Bytes received from it (frame bodies).
    pub bytes_received: AtomicU64,
    /// Frames waiting in its link's queue (as of the last enqueue or
    /// write).
    pub queued: AtomicU64,
    /// Frames dropped because its link's queue was full.
    pub dropped_queue_full: AtomicU64,
}

impl PeerStats {
    /// Whether `peer` holds an authenticated connection to this node now.
    pub fn connected(&self) -> bool {
        self.inbound_open.load(Ordering::Relaxed) > 0
    }
}

impl TransportStats {
    /// Add one to `counter`.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Read `counter`.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Add `n` to `counter`.
    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The counters of `peer` (created on first use).
    pub fn peer(&self, peer: &str) -> Arc<PeerStats> {
        let mut peers = self.lock_peers();
        if let Some(stats) = peers.get(peer) {
            return Arc::clone(stats);
        }
        let stats = Arc::new(PeerStats::default());
        peers.insert(peer.into(), Arc::clone(&stats));
        stats
    }

    /// Every peer's counters.
    pub fn peers(&self) -> Vec<(Arc<str>, Arc<PeerStats>)> {
        let peers = self.lock_peers();
        peers
            .iter()
            .map(|(k, v)| (Arc::clone(k), Arc::clone(v)))
            .collect()
    }

    fn lock_peers(&self) -> MutexGuard<'_, BTreeMap<Arc<str>, Arc<PeerStats>>> {
        self.peers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
