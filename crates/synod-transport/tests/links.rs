//! Transport behaviour over real loopback sockets: framing edge cases,
//! every hostile peer we can think of, reconnection and clean shutdown.
//!
//! Hostile cases all end the same way: the hostile connection is closed,
//! nothing it sent reaches the router, and a well-behaved peer sending a
//! marker afterwards is still served.

use actix::prelude::*;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use synod_core::{Ballot, Message, RoleId};
use synod_transport::{
    Envelope, Inbound, Listener, Outbound, PROTOCOL_VERSION, PeerLink, Shutdown, StopListening,
    TransportConfig, TransportStats, encode_frame, frame_codec, handshake,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::Framed;

const SECRET: &[u8] = b"cluster-secret";
const DEADLINE: Duration = Duration::from_secs(10);

/// The router stand-in: hands every inbound message to the test.
struct Collector(mpsc::UnboundedSender<Inbound<Message>>);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<Inbound<Message>> for Collector {
    type Result = ();
    fn handle(&mut self, inbound: Inbound<Message>, _: &mut Context<Self>) {
        let _ = self.0.send(inbound);
    }
}

struct Server {
    address: SocketAddr,
    listener: Addr<Listener<Message>>,
    inbox: mpsc::UnboundedReceiver<Inbound<Message>>,
    stats: Arc<TransportStats>,
}

impl Server {
    /// The next `count` messages the router gets (failing after `DEADLINE`).
    async fn receive(&mut self, count: usize) -> Vec<Inbound<Message>> {
        let mut got = Vec::with_capacity(count);
        while got.len() < count {
            let next = tokio::time::timeout(DEADLINE, self.inbox.recv())
                .await
                .unwrap_or_else(|_| panic!("{} of {count} messages arrived", got.len()));
            got.push(next.expect("the collector is running"));
        }
        got
    }

    /// Messages the router has got but the test has not taken yet.
    fn unread(&mut self) -> Vec<Inbound<Message>> {
        std::iter::from_fn(|| self.inbox.try_recv().ok()).collect()
    }
}

fn server_config() -> TransportConfig {
    let mut config = TransportConfig::new("test", "server", SECRET)
        .with_peer("client", "127.0.0.1:9")
        .with_peer("other", "127.0.0.1:9");
    config.max_frame_len = 64 * 1024;
    config.handshake_timeout = Duration::from_millis(300);
    config
}

async fn start_server_at(address: SocketAddr) -> Server {
    let (sender, inbox) = mpsc::unbounded_channel();
    let router = Collector(sender).start().recipient();
    let stats = Arc::new(TransportStats::default());
    let listener = Listener::bind(
        address,
        Arc::new(server_config()),
        Arc::clone(&stats),
        router,
    )
    .await
    .unwrap();
    let address = listener.local_addr().unwrap();
    Server {
        address,
        listener: listener.start(),
        inbox,
        stats,
    }
}

async fn start_server() -> Server {
    start_server_at("127.0.0.1:0".parse().unwrap()).await
}

fn client_config(server: SocketAddr) -> TransportConfig {
    TransportConfig::new("test", "client", SECRET).with_peer("server", server)
}

fn prepare(round: u64) -> Message {
    Message::Prepare {
        ballot: Ballot::new(round, 1),
        from_slot: 0,
    }
}

fn frame(sender: &str, message: Message) -> Bytes {
    let envelope = Envelope {
        version: PROTOCOL_VERSION,
        cluster: "test",
        sender,
        from: RoleId::proposer(1),
        to: RoleId::acceptor(1),
        message,
    };
    encode_frame(&envelope, 1 << 20).unwrap()
}

/// A raw TCP connection that has completed the handshake as `config.node`.
async fn authenticated(config: &TransportConfig) -> TcpStream {
    let stream = TcpStream::connect(config.peers["server"].as_str())
        .await
        .unwrap();
    let mut framed = Framed::new(stream, frame_codec(1 << 20));
    handshake(&mut framed, config, Some("server"))
        .await
        .unwrap();
    framed.into_inner()
}

/// Wait until the server closes `stream` (EOF or reset).
async fn closed_by_server(stream: &mut TcpStream) {
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(DEADLINE, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    });
    read.await.expect("server should close the connection");
}

/// Send a marker over a fresh, honest connection and wait for it; then
/// the marker must be the only thing the router ever saw.
async fn only_the_marker_arrives(server: &mut Server) {
    let mut honest = authenticated(&client_config(server.address)).await;
    honest
        .write_all(&frame("client", prepare(999)))
        .await
        .unwrap();
    let first = server.receive(1).await;
    assert_eq!(
        first[0].message,
        prepare(999),
        "hostile traffic reached the router: {first:?}"
    );
    let rest = server.unread();
    assert!(
        rest.is_empty(),
        "hostile traffic reached the router: {rest:?}"
    );
}

#[actix_rt::test]
async fn frames_split_across_reads_and_many_in_one_read_all_arrive() {
    let mut server = start_server().await;
    let mut stream = authenticated(&client_config(server.address)).await;
    // One frame, one byte per write.
    for byte in frame("client", prepare(1)).iter() {
        stream.write_all(&[*byte]).await.unwrap();
        stream.flush().await.unwrap();
    }
    // A hundred frames in one write.
    let many: Vec<u8> = (2..102)
        .flat_map(|r| frame("client", prepare(r)).to_vec())
        .collect();
    stream.write_all(&many).await.unwrap();
    let got = server.receive(101).await;
    let rounds: Vec<u64> = got
        .iter()
        .map(|m| match m.message {
            Message::Prepare { ballot, .. } => ballot.round,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(rounds, (1..102).collect::<Vec<_>>(), "in order, none lost");
    assert_eq!(&*got[0].node, "client");
}

#[actix_rt::test]
async fn an_oversized_length_prefix_closes_the_link() {
    let mut server = start_server().await;
    let mut stream = authenticated(&client_config(server.address)).await;
    stream
        .write_all(&[0xff, 0xff, 0xff, 0xf0, 1, 2, 3])
        .await
        .unwrap();
    closed_by_server(&mut stream).await;
    assert_eq!(
        server
            .stats
            .connections_closed_hostile
            .load(Ordering::Relaxed),
        1
    );
    only_the_marker_arrives(&mut server).await;
}

#[actix_rt::test]
async fn garbage_instead_of_a_handshake_closes_the_link() {
    let mut server = start_server().await;
    let mut stream = TcpStream::connect(server.address).await.unwrap();
    stream
        .write_all(&[0, 0, 0, 12, 0xde, 0xad, 0xbe, 0xef, 9, 9, 9, 9, 9, 9, 9, 9])
        .await
        .unwrap();
    closed_by_server(&mut stream).await;
    assert_eq!(server.stats.handshakes_refused.load(Ordering::Relaxed), 1);
    only_the_marker_arrives(&mut server).await;
}

#[actix_rt::test]
async fn a_garbage_frame_after_the_handshake_closes_the_link() {
    let mut server = start_server().await;
    let mut stream = authenticated(&client_config(server.address)).await;
    stream
        .write_all(&[0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    closed_by_server(&mut stream).await;
    only_the_marker_arrives(&mut server).await;
}

#[actix_rt::test]
async fn a_truncated_frame_delivers_nothing() {
    let mut server = start_server().await;
    let mut stream = authenticated(&client_config(server.address)).await;
    let whole = frame("client", prepare(5));
    stream.write_all(&whole[..whole.len() - 3]).await.unwrap();
    stream.shutdown().await.unwrap();
    closed_by_server(&mut stream).await;
    only_the_marker_arrives(&mut server).await;
}

/// A Hello frame in handshake encoding (tag 0, version, cluster, node, nonce).
fn raw_hello(version: u8, cluster: &str, node: &str) -> Vec<u8> {
    let mut payload = vec![0, version, cluster.len() as u8];
    payload.extend_from_slice(cluster.as_bytes());
    payload.push(node.len() as u8);
    payload.extend_from_slice(node.as_bytes());
    payload.extend_from_slice(&[7u8; 32]);
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend(payload);
    frame
}

#[actix_rt::test]
async fn a_wrong_protocol_version_is_refused() {
    let mut server = start_server().await;
    let mut stream = TcpStream::connect(server.address).await.unwrap();
    stream
        .write_all(&raw_hello(PROTOCOL_VERSION as u8 + 1, "test", "client"))
        .await
        .unwrap();
    closed_by_server(&mut stream).await;
    assert_eq!(server.stats.handshakes_refused.load(Ordering::Relaxed), 1);
    only_the_marker_arrives(&mut server).await;
}

#[actix_rt::test]
async fn a_wrong_version_inside_an_envelope_closes_the_link() {
    let mut server = start_server().await;
    let mut stream = authenticated(&client_config(server.address)).await;
    let envelope = Envelope {
        version: PROTOCOL_VERSION + 1,
        cluster: "test",
        sender: "client",
        from: RoleId::proposer(1),
        to: RoleId::acceptor(1),
        message: prepare(1),
    };
    stream
        .write_all(&encode_frame(&envelope, 1 << 20).unwrap())
        .await
        .unwrap();
    closed_by_server(&mut stream).await;
    only_the_marker_arrives(&mut server).await;
}

async fn refused_handshake(server: &Server, config: TransportConfig) {
    let stream = TcpStream::connect(server.address).await.unwrap();
    let mut framed = Framed::new(stream, frame_codec(1 << 20));
    let result = handshake(&mut framed, &config, Some("server")).await;
    let mut stream = framed.into_inner();
    closed_by_server(&mut stream).await;
    assert!(result.is_err(), "the client sees the refusal too");
    // The listener counts a refusal before it drops the connection.
    assert_eq!(server.stats.handshakes_refused.load(Ordering::Relaxed), 1);
}

#[actix_rt::test]
async fn a_wrong_cluster_id_is_refused() {
    let mut server = start_server().await;
    let mut config = client_config(server.address);
    config.cluster_id = "another-cluster".into();
    refused_handshake(&server, config).await;
    only_the_marker_arrives(&mut server).await;
}

#[actix_rt::test]
async fn a_bad_secret_is_refused() {
    let mut server = start_server().await;
    let mut config = client_config(server.address);
    config.secret = b"guessed".to_vec();
    refused_handshake(&server, config).await;
    only_the_marker_arrives(&mut server).await;
}

#[actix_rt::test]
async fn an_unknown_node_is_refused() {
    let mut server = start_server().await;
    let mut config = client_config(server.address);
    config.node = "stranger".into();
    refused_handshake(&server, config).await;
    only_the_marker_arrives(&mut server).await;
}

#[actix_rt::test]
async fn a_silent_peer_is_dropped_after_the_handshake_timeout() {
    let mut server = start_server().await;
    let mut stream = TcpStream::connect(server.address).await.unwrap();
    closed_by_server(&mut stream).await;
    assert_eq!(server.stats.handshakes_refused.load(Ordering::Relaxed), 1);
    only_the_marker_arrives(&mut server).await;
}

#[actix_rt::test]
async fn past_the_cap_of_unauthenticated_connections_a_new_one_is_closed_on_arrival() {
    let mut server = start_server().await;
    let mut silent = Vec::new();
    for _ in 0..synod_transport::MAX_UNAUTHENTICATED {
        silent.push(TcpStream::connect(server.address).await.unwrap());
    }
    let mut one_more = TcpStream::connect(server.address).await.unwrap();
    closed_by_server(&mut one_more).await;
    assert_eq!(
        server.stats.refused_unauthenticated.load(Ordering::Relaxed),
        1,
        "refused for the cap, not for its own silence"
    );
    // The silent ones time out and free their places.
    for stream in &mut silent {
        closed_by_server(stream).await;
    }
    only_the_marker_arrives(&mut server).await;
}

#[actix_rt::test]
async fn a_spoofed_sender_is_dropped_and_counted_and_the_link_stays_up() {
    let mut server = start_server().await;
    let mut stream = authenticated(&client_config(server.address)).await;
    stream.write_all(&frame("other", prepare(1))).await.unwrap();
    stream
        .write_all(&frame("client", prepare(2)))
        .await
        .unwrap();
    let got = server.receive(1).await;
    assert_eq!(got[0].message, prepare(2));
    assert!(server.unread().is_empty());
    assert_eq!(server.stats.dropped_spoofed.load(Ordering::Relaxed), 1);
}

fn link_to(server: SocketAddr, stats: &Arc<TransportStats>) -> Addr<PeerLink<Message>> {
    let mut config = client_config(server);
    config.reconnect_min = Duration::from_millis(10);
    config.reconnect_max = Duration::from_millis(100);
    PeerLink::<Message>::new("server", Arc::new(config), Arc::clone(stats)).start()
}

fn outbound(round: u64) -> Outbound<Message> {
    Outbound {
        from: RoleId::proposer(1),
        to: RoleId::acceptor(1),
        message: prepare(round),
    }
}

#[actix_rt::test]
async fn a_restarted_peer_is_reconnected_and_messages_flow_again() {
    let mut server = start_server().await;
    let stats = Arc::new(TransportStats::default());
    let link = link_to(server.address, &stats);
    link.do_send(outbound(1));
    server.receive(1).await;

    // The peer goes away and comes back on the same address.
    let address = server.address;
    server.listener.send(StopListening).await.unwrap();
    let mut restarted = start_server_at(address).await;
    // Messages sent while the link notices and reconnects may be lost; keep
    // sending, one every 10 ms, until one arrives.
    let start = Instant::now();
    let mut round = 2;
    loop {
        assert!(start.elapsed() < DEADLINE, "link never reconnected");
        link.do_send(outbound(round));
        round += 1;
        let wait = tokio::time::timeout(Duration::from_millis(10), restarted.inbox.recv());
        if wait.await.is_ok() {
            break;
        }
    }
    assert!(stats.connects.load(Ordering::Relaxed) >= 2, "reconnected");
}

#[actix_rt::test]
async fn shutdown_flushes_queued_messages() {
    let mut server = start_server().await;
    let stats = Arc::new(TransportStats::default());
    let link = link_to(server.address, &stats);
    for round in 0..1_000 {
        link.do_send(outbound(round));
    }
    link.send(Shutdown).await.unwrap();
    server.receive(1_000).await;
}

#[actix_rt::test]
async fn a_full_queue_drops_and_counts_instead_of_growing() {
    // Nobody listens at this address, so nothing drains the queue.
    let unused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = client_config(unused);
    config.queue_capacity = 10;
    let stats = Arc::new(TransportStats::default());
    let link = PeerLink::<Message>::new("server", Arc::new(config), Arc::clone(&stats)).start();
    for round in 0..25 {
        link.do_send(outbound(round));
    }
    link.send(Shutdown).await.unwrap();
    assert_eq!(stats.dropped_queue_full.load(Ordering::Relaxed), 15);
}

#[actix_rt::test]
async fn an_honest_peer_link_uses_the_full_stack() {
    let mut server = start_server().await;
    let stats = Arc::new(TransportStats::default());
    let link = link_to(server.address, &stats);
    link.do_send(outbound(7));
    let got = &server.receive(1).await[0];
    assert_eq!(
        (got.from, got.to, &got.message),
        (RoleId::proposer(1), RoleId::acceptor(1), &prepare(7))
    );
}

#[actix_rt::test]
async fn a_message_too_large_for_a_frame_is_counted_and_the_link_goes_on() {
    let mut server = start_server().await;
    let stats = Arc::new(TransportStats::default());
    let link = link_to(server.address, &stats);
    let huge = Message::Decided {
        slot: 1,
        value: synod_core::Value::batch(vec![synod_core::Command {
            id: synod_core::CommandId { client: 1, seq: 1 },
            payload: vec![0; 5 * 1024 * 1024],
        }]),
    };
    link.do_send(Outbound {
        from: RoleId::proposer(1),
        to: RoleId::learner(1),
        message: huge,
    });
    link.do_send(outbound(3));
    let got = &server.receive(1).await[0];
    assert_eq!(got.message, prepare(3), "the next message still goes");
    assert_eq!(stats.dropped_unencodable.load(Ordering::Relaxed), 1);
    assert!(server.unread().is_empty());
}
