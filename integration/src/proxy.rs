//! A frame-aware fault proxy on every directed node-to-node link.
//!
//! Synod's transport uses one TCP connection per direction (A's link to B
//! carries A → B traffic), so a proxy per ordered pair `(from, to)` sees
//! exactly one direction of one link. [`FaultNet`] listens on a loopback
//! port per pair and forwards to `to`'s real port; [`FaultNet::config_for`]
//! rewrites a node's config so that the other nodes' `advertise` addresses
//! are its proxies. The real ports stay private.
//!
//! The proxy reads the transport's length-delimited frames, so it can drop,
//! duplicate, hold back (reorder) and delay whole messages. The dialler's
//! three handshake frames (Hello, Proof, Settings) are only delayed, never
//! dropped or duplicated: a link that cannot authenticate is "refuse", a
//! mode of its own. Every fault is drawn from one seeded RNG per link.
//!
//! The proxies run on their own thread and runtime, so a test thread that
//! blocks (waiting for a process, checking a history) never stalls them.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

/// Frames the dialler sends in the transport's handshake.
const HANDSHAKE_FRAMES: u64 = 3;

/// What happens to a link's connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Forward (with the frame faults of [`LinkFault`]).
    #[default]
    Pass,
    /// Keep connections open, forward nothing, in either direction.
    Blackhole,
    /// Close every connection, accept none.
    Refuse,
}

/// The faults of one directed link.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkFault {
    /// Pass, blackhole or refuse.
    pub mode: Mode,
    /// Fraction of frames dropped.
    pub drop: f64,
    /// Fraction of frames sent twice.
    pub duplicate: f64,
    /// Fraction of frames held back and sent after the next one.
    pub reorder: f64,
    /// Every frame waits this long ...
    pub delay: Duration,
    /// ... plus up to this much more (uniform).
    pub jitter: Duration,
}

impl LinkFault {
    /// A link that works.
    pub const PASS: Self = Self {
        mode: Mode::Pass,
        drop: 0.0,
        duplicate: 0.0,
        reorder: 0.0,
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
    };

    /// A link that is cut: connections refused and closed.
    pub const CUT: Self = Self {
        mode: Mode::Refuse,
        ..Self::PASS
    };

    /// A link whose connections stay open and carry nothing.
    pub const BLACKHOLE: Self = Self {
        mode: Mode::Blackhole,
        ..Self::PASS
    };

    /// Whether messages can cross it at all.
    pub fn is_cut(&self) -> bool {
        self.mode != Mode::Pass || self.drop >= 1.0
    }
}

/// What a link's proxy did, counted since it started.
#[derive(Debug, Default)]
pub struct LinkCounters {
    /// Frames read from the dialler.
    pub read: AtomicU64,
    /// Frames forwarded (a duplicate counts twice).
    pub forwarded: AtomicU64,
    /// Frames dropped or swallowed by a blackhole.
    pub dropped: AtomicU64,
    /// Frames sent twice.
    pub duplicated: AtomicU64,
    /// Frames held back behind the next one.
    pub reordered: AtomicU64,
    /// Connections refused or closed by a cut.
    pub refused: AtomicU64,
}

struct Link {
    proxy: SocketAddr,
    fault: watch::Sender<LinkFault>,
    counters: Arc<LinkCounters>,
}

/// One fault proxy per ordered pair of nodes.
pub struct FaultNet {
    links: BTreeMap<(String, String), Link>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultNet {
    /// Proxies for every ordered pair of `nodes` (name → real `listen`
    /// address), with every link passing. Each link's RNG is seeded from
    /// `seed` and the pair.
    pub fn new(nodes: &BTreeMap<String, SocketAddr>, seed: u64) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the proxies");
        let mut links = BTreeMap::new();
        let mut index = 0u64;
        for (from, _) in nodes.iter() {
            for (to, &target) in nodes.iter().filter(|(to, _)| *to != from) {
                index += 1;
                let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a proxy");
                listener.set_nonblocking(true).expect("nonblocking");
                let proxy = listener.local_addr().expect("bound");
                let (fault, faults) = watch::channel(LinkFault::PASS);
                let counters = Arc::new(LinkCounters::default());
                let rng =
                    ChaCha8Rng::seed_from_u64(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let serve = serve(listener, target, faults, counters.clone(), rng);
                runtime.spawn(serve);
                let link = Link {
                    proxy,
                    fault,
                    counters,
                };
                links.insert((from.clone(), to.clone()), link);
            }
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("fault-proxies".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })
            .expect("spawn the proxy thread");
        Self {
            links,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `toml` (a rendered cluster config) as `node` runs it: every other
    /// node's `advertise` is the proxy of `node`'s link to it.
    pub fn config_for(&self, node: &str, toml: &str) -> String {
        let mut out = String::with_capacity(toml.len() + 256);
        for line in toml.lines() {
            out.push_str(line);
            out.push('\n');
            let Some(peer) = line
                .strip_prefix("[nodes.")
                .and_then(|rest| rest.strip_suffix(']'))
            else {
                continue;
            };
            if let Some(link) = self.links.get(&(node.to_owned(), peer.to_owned())) {
                out.push_str(&format!("advertise = \"{}\"\n", link.proxy));
            }
        }
        out
    }

    /// The nodes, in name order.
    pub fn nodes(&self) -> Vec<String> {
        let mut nodes: Vec<String> = self.links.keys().map(|(from, _)| from.clone()).collect();
        nodes.dedup();
        nodes
    }

    fn link(&self, from: &str, to: &str) -> &Link {
        self.links
            .get(&(from.to_owned(), to.to_owned()))
            .unwrap_or_else(|| panic!("no link {from} → {to}"))
    }

    /// Set the faults of the link `from → to`.
    pub fn set(&self, from: &str, to: &str, fault: LinkFault) {
        self.link(from, to).fault.send_replace(fault);
    }

    /// The faults of the link `from → to` now.
    pub fn get(&self, from: &str, to: &str) -> LinkFault {
        *self.link(from, to).fault.borrow()
    }

    /// Set the faults of every link.
    pub fn set_all(&self, fault: LinkFault) {
        for link in self.links.values() {
            link.fault.send_replace(fault);
        }
    }

    /// Every link passes again.
    pub fn heal(&self) {
        self.set_all(LinkFault::PASS);
    }

    /// What the proxy of `from → to` has done.
    pub fn counters(&self, from: &str, to: &str) -> &LinkCounters {
        &self.link(from, to).counters
    }

    /// Frames dropped on all links together.
    pub fn total_dropped(&self) -> u64 {
        let dropped = self.links.values();
        dropped
            .map(|l| l.counters.dropped.load(Ordering::Relaxed))
            .sum()
    }
}

impl Drop for FaultNet {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Accept connections for one link and run each through the faults.
async fn serve(
    listener: std::net::TcpListener,
    target: SocketAddr,
    faults: watch::Receiver<LinkFault>,
    counters: Arc<LinkCounters>,
    rng: ChaCha8Rng,
) {
    let listener = TcpListener::from_std(listener).expect("a tokio listener");
    let rng = Arc::new(std::sync::Mutex::new(rng));
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            continue;
        };
        if faults.borrow().mode == Mode::Refuse {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            continue; // dropped: the dialler sees the connection close
        }
        let connection = Connection {
            faults: faults.clone(),
            counters: counters.clone(),
            rng: rng.clone(),
        };
        tokio::spawn(connection.run(inbound, target));
    }
}

struct Connection {
    faults: watch::Receiver<LinkFault>,
    counters: Arc<LinkCounters>,
    rng: Arc<std::sync::Mutex<ChaCha8Rng>>,
}

impl Connection {
    /// Forward one connection until either side closes or the link is cut.
    async fn run(self, inbound: TcpStream, target: SocketAddr) {
        let Ok(outbound) = TcpStream::connect(target).await else {
            return; // the node is down: the dialler sees a closed connection
        };
        let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
        let (in_read, in_write) = inbound.into_split();
        let (out_read, out_write) = outbound.into_split();
        let (to_send, queued) = mpsc::unbounded_channel();
        let mut cut = self.faults.clone();
        tokio::select! {
            _ = self.upstream(in_read, to_send) => {}
            _ = deliver(queued, out_write) => {}
            _ = downstream(out_read, in_write, self.faults.clone()) => {}
            _ = cut.wait_for(|f| f.mode == Mode::Refuse) => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Read the dialler's frames, decide each one's fate, queue the
    /// survivors with the time they are due.
    async fn upstream(
        &self,
        read: tokio::net::tcp::OwnedReadHalf,
        queue: mpsc::UnboundedSender<(tokio::time::Instant, Bytes)>,
    ) {
        let mut frames = FramedRead::new(read, codec());
        let mut held: Option<Bytes> = None;
        let mut seen = 0u64;
        while let Some(Ok(frame)) = frames.next().await {
            seen += 1;
            self.counters.read.fetch_add(1, Ordering::Relaxed);
            let fault = *self.faults.borrow();
            let frame = frame.freeze();
            let fate = if fault.mode == Mode::Blackhole {
                Fate::Drop
            } else if seen <= HANDSHAKE_FRAMES {
                Fate::Send
            } else {
                self.fate(&fault)
            };
            let due = tokio::time::Instant::now() + self.delay(&fault);
            let mut send = |frame: Bytes| {
                self.counters.forwarded.fetch_add(1, Ordering::Relaxed);
                queue.send((due, frame)).is_ok()
            };
            let sent = match fate {
                Fate::Drop => {
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Fate::Duplicate => {
                    self.counters.duplicated.fetch_add(1, Ordering::Relaxed);
                    send(frame.clone()) && send(frame)
                }
                Fate::HoldBack if held.is_none() => {
                    self.counters.reordered.fetch_add(1, Ordering::Relaxed);
                    held = Some(frame);
                    continue;
                }
                Fate::HoldBack | Fate::Send => send(frame),
            };
            let released = held.take().is_none_or(&mut send);
            if !(sent && released) {
                return;
            }
        }
    }

    fn fate(&self, fault: &LinkFault) -> Fate {
        let mut rng = self.rng.lock().expect("rng");
        let roll: f64 = rng.random();
        if roll < fault.drop {
            Fate::Drop
        } else if roll < fault.drop + fault.duplicate {
            Fate::Duplicate
        } else if roll < fault.drop + fault.duplicate + fault.reorder {
            Fate::HoldBack
        } else {
            Fate::Send
        }
    }

    fn delay(&self, fault: &LinkFault) -> Duration {
        if fault.jitter.is_zero() {
            return fault.delay;
        }
        let extra = self.rng.lock().expect("rng").random_range(0.0..1.0);
        fault.delay + fault.jitter.mul_f64(extra)
    }
}

enum Fate {
    Send,
    Drop,
    Duplicate,
    HoldBack,
}

/// Write queued frames to the node once each is due, in queue order.
async fn deliver(
    mut queued: mpsc::UnboundedReceiver<(tokio::time::Instant, Bytes)>,
    write: tokio::net::tcp::OwnedWriteHalf,
) {
    let mut frames = FramedWrite::new(write, codec());
    while let Some((due, frame)) = queued.recv().await {
        tokio::time::sleep_until(due).await;
        if frames.send(frame).await.is_err() {
            return;
        }
    }
}

/// Copy the node's bytes back to the dialler (its handshake replies),
/// except through a blackhole.
async fn downstream(
    mut read: tokio::net::tcp::OwnedReadHalf,
    mut write: tokio::net::tcp::OwnedWriteHalf,
    faults: watch::Receiver<LinkFault>,
) {
    use tokio::io::AsyncReadExt;
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let Ok(n) = read.read(&mut buffer).await else {
            return;
        };
        if n == 0 {
            return;
        }
        if faults.borrow().mode == Mode::Blackhole {
            continue;
        }
        if write.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// The transport's framing, with room for any frame a node may send.
fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(1 << 30)
        .new_codec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener as StdListener, TcpStream as StdStream};

    /// A proxy from "a" to a plain listener standing in for node "b".
    fn net_to_listener() -> (FaultNet, StdListener) {
        let b = StdListener::bind("127.0.0.1:0").unwrap();
        let nodes = BTreeMap::from([
            ("a".to_owned(), "127.0.0.1:9".parse().unwrap()),
            ("b".to_owned(), b.local_addr().unwrap()),
        ]);
        (FaultNet::new(&nodes, 5), b)
    }

    fn send(stream: &mut StdStream, n: u8) {
        stream.write_all(&[0, 0, 0, 1, n]).unwrap();
    }

    fn receive(stream: &mut StdStream) -> Option<u8> {
        let mut frame = [0u8; 5];
        stream.read_exact(&mut frame).ok()?;
        assert_eq!(&frame[..4], &[0, 0, 0, 1], "a frame of one byte");
        Some(frame[4])
    }

    /// Connect a → proxy → b; returns (a's end, b's end).
    fn connect(net: &FaultNet, b: &StdListener) -> (StdStream, StdStream) {
        let a = StdStream::connect(net.link("a", "b").proxy).unwrap();
        let (b_end, _) = b.accept().unwrap();
        (a, b_end)
    }

    /// Send frames `1..=count` and read what arrives until frame `last`.
    fn arrivals(net: &FaultNet, b: &StdListener, fault: LinkFault, count: u8) -> Vec<u8> {
        let (mut a, mut b_end) = connect(net, b);
        net.set("a", "b", fault);
        for n in 1..=count {
            send(&mut a, n);
        }
        // Every frame is read under `fault` before the link passes again.
        let read = &net.counters("a", "b").read;
        while read.load(Ordering::Relaxed) < u64::from(count) {
            std::thread::yield_now();
        }
        net.set("a", "b", LinkFault::PASS);
        send(&mut a, 100); // passes whatever happened before
        let mut seen = Vec::new();
        while let Some(n) = receive(&mut b_end) {
            seen.push(n);
            if n == 100 {
                break;
            }
        }
        seen
    }

    #[test]
    fn handshake_frames_pass_and_later_frames_are_dropped() {
        let (net, b) = net_to_listener();
        let dropping = LinkFault {
            drop: 1.0,
            ..LinkFault::PASS
        };
        assert_eq!(arrivals(&net, &b, dropping, 6), vec![1, 2, 3, 100]);
        assert_eq!(net.counters("a", "b").dropped.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn duplicated_frames_arrive_twice_in_order() {
        let (net, b) = net_to_listener();
        let doubling = LinkFault {
            duplicate: 1.0,
            ..LinkFault::PASS
        };
        assert_eq!(
            arrivals(&net, &b, doubling, 5),
            vec![1, 2, 3, 4, 4, 5, 5, 100]
        );
    }

    #[test]
    fn reordered_frames_swap_with_the_next() {
        let (net, b) = net_to_listener();
        let swapping = LinkFault {
            reorder: 1.0,
            ..LinkFault::PASS
        };
        assert_eq!(
            arrivals(&net, &b, swapping, 7),
            vec![1, 2, 3, 5, 4, 7, 6, 100]
        );
    }

    #[test]
    fn a_cut_closes_the_connection_and_refuses_new_ones() {
        let (net, b) = net_to_listener();
        let (mut a, mut b_end) = connect(&net, &b);
        send(&mut a, 1);
        assert_eq!(receive(&mut b_end), Some(1));
        net.set("a", "b", LinkFault::CUT);
        assert_eq!(receive(&mut b_end), None, "the cut closed the connection");
        let mut again = StdStream::connect(net.link("a", "b").proxy).unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(
            again.read(&mut byte).unwrap_or(0),
            0,
            "refused: closed at once"
        );
        assert!(net.counters("a", "b").refused.load(Ordering::Relaxed) >= 2);
    }

    #[test]
    fn a_nodes_config_points_its_peers_at_its_proxies() {
        let (net, _b) = net_to_listener();
        let toml = "[nodes.a]\nlisten = \"x\"\n[nodes.b]\nlisten = \"y\"\n";
        let proxy = net.link("a", "b").proxy;
        let expected = format!(
            "[nodes.a]\nlisten = \"x\"\n[nodes.b]\nadvertise = \"{proxy}\"\nlisten = \"y\"\n"
        );
        assert_eq!(net.config_for("a", toml), expected);
    }
}
