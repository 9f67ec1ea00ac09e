//! One-way throughput between two actix systems over loopback: small
//! messages (~64 B) through a `PeerLink` into a `Listener` and a router.
//!
//! ```sh
//! cargo run --release -p synod-transport --example throughput [-- SECONDS]
//! ```
//!
//! Ends with `messages/s: N, MB/s: M` (messages delivered to the receiving
//! router, and their frame bytes).

use actix::prelude::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};
use synod_core::{Ballot, Command, CommandId, Message, RoleId, Value};
use synod_transport::{
    Envelope, Inbound, Listener, Outbound, OutboundBatch, PROTOCOL_VERSION, PeerLink,
    TransportConfig, TransportStats, encode_frame,
};

const SECRET: &[u8] = b"bench-secret";
const BATCH: usize = 256;
/// Messages in flight (sent, not yet counted by the receiver) at most, so
/// the sender measures sustained throughput instead of overflowing the
/// link's queue.
const WINDOW: u64 = 32_768;

struct Counter(Arc<AtomicU64>);

impl Actor for Counter {
    type Context = Context<Self>;
}

impl Handler<Inbound<Message>> for Counter {
    type Result = ();
    fn handle(&mut self, _: Inbound<Message>, _: &mut Context<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn message(slot: u64) -> Message {
    let command = Command {
        id: CommandId {
            client: 1,
            seq: slot,
        },
        payload: vec![0x5a; 40],
    };
    Message::Accept {
        ballot: Ballot::new(1, 1),
        slot,
        value: Value::batch(vec![command]),
        chosen_upto: slot,
    }
}

/// The receiving node, on its own thread and actix system.
fn start_receiver(received: Arc<AtomicU64>) -> SocketAddr {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let system = System::new();
        system.block_on(async move {
            let config = TransportConfig::new("bench", "receiver", SECRET)
                .with_peer("sender", "127.0.0.1:9");
            let router = Counter(received).start().recipient();
            let stats = Arc::new(TransportStats::default());
            let listener = Listener::bind(
                "127.0.0.1:0".parse().unwrap(),
                Arc::new(config),
                stats,
                router,
            )
            .await
            .unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            listener.start();
        });
        system.run().unwrap();
    });
    rx.recv().expect("receiver address")
}

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let received = Arc::new(AtomicU64::new(0));
    let address = start_receiver(Arc::clone(&received));

    let frame_len = {
        let envelope = Envelope {
            version: PROTOCOL_VERSION,
            cluster: "bench",
            sender: "sender",
            from: RoleId::proposer(1),
            to: RoleId::acceptor(1),
            message: message(1_000_000),
        };
        encode_frame(&envelope, 1 << 20).unwrap().len()
    };

    let system = System::new();
    let stats = Arc::new(TransportStats::default());
    let sender_stats = Arc::clone(&stats);
    let counted = Arc::clone(&received);
    let (count, elapsed) = system.block_on(async move {
        let config = TransportConfig::new("bench", "sender", SECRET).with_peer("receiver", address);
        let link = PeerLink::<Message>::new("receiver", Arc::new(config), sender_stats).start();
        let warmup = Duration::from_millis(500);
        let length = Duration::from_secs(seconds);
        let begin = Instant::now();
        let mut slot = 0;
        let mut start_count = None;
        while begin.elapsed() < warmup + length {
            if start_count.is_none() && begin.elapsed() >= warmup {
                start_count = Some((counted.load(Ordering::Relaxed), Instant::now()));
            }
            while slot - counted.load(Ordering::Relaxed) > WINDOW {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            let batch = (0..BATCH)
                .map(|_| {
                    slot += 1;
                    Outbound {
                        from: RoleId::proposer(1),
                        to: RoleId::acceptor(1),
                        message: message(slot),
                    }
                })
                .collect();
            link.send(OutboundBatch(batch)).await.expect("link alive");
        }
        let (first, since) = start_count.expect("ran past warm-up");
        (counted.load(Ordering::Relaxed) - first, since.elapsed())
    });
    let rate = count as f64 / elapsed.as_secs_f64();
    let megabytes = rate * frame_len as f64 / 1e6;
    println!(
        "frame: {frame_len} B, sent: {}, dropped (queue full): {}",
        stats.frames_sent.load(Ordering::Relaxed),
        stats.dropped_queue_full.load(Ordering::Relaxed)
    );
    println!("messages/s: {rate:.0}, MB/s: {megabytes:.1}");
}
