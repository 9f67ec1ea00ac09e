//! Loopback ports for test nodes that nothing else takes in the meantime.
//!
//! A port picked by binding `127.0.0.1:0` comes from the kernel's
//! ephemeral range, the same range outgoing connections take their source
//! ports from. Between the pick and the node's own bind, any client or
//! peer connection in the test process can take it ("Address already in
//! use"), and a node restarted after a kill can find its port taken the
//! same way. So test ports come from below the ephemeral range, each
//! handed out once per process (a counter), starting at an offset drawn
//! from the process id so that test processes running side by side start
//! far apart, and each checked free by a bind before it is handed out.

use std::sync::atomic::{AtomicU32, Ordering};

/// The lowest port handed out: above the well-known and the CLI tests'
/// fixed ports (7101–7123).
const LOWEST: u32 = 10_000;

/// Ports handed out in this process so far.
static HANDED_OUT: AtomicU32 = AtomicU32::new(0);

/// A loopback port that no earlier call in this process returned, outside
/// the range the kernel picks source ports from, and free when returned.
pub fn test_port() -> u16 {
    let highest = ephemeral_low().saturating_sub(1).max(LOWEST + 1_000);
    let span = highest - LOWEST + 1;
    let start = std::process::id().wrapping_mul(2_654_435_761) % span;
    for _ in 0..span {
        let n = HANDED_OUT.fetch_add(1, Ordering::Relaxed);
        let port = LOWEST + (start + n) % span;
        if std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
    panic!("no free loopback port in {LOWEST}..={highest}");
}

/// The first port of the kernel's ephemeral range (32768 when unknown).
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_never_handed_out_twice_and_stay_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..200).map(|_| test_port()).collect();
        let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len());
        assert!(ports.iter().all(|&p| u32::from(p) < ephemeral_low()));
        assert!(ports.iter().all(|&p| u32::from(p) >= LOWEST));
    }
}
