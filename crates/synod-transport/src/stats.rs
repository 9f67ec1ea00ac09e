//! Counters a node exports about its links.

use std::sync::atomic::{AtomicU64, Ordering};

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
}
