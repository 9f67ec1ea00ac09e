//! The admin HTTP server of a node (`nodes.NAME.admin_listen`, actix-web):
//!
//! - `GET /livez`: 200 while the process serves;
//! - `GET /readyz`: 200 when this node's roles can make progress (none
//!   stopped, a phase-2 quorum of acceptors reachable (a majority unless
//!   `[quorums]` says otherwise), its proposers know a
//!   leader, its learners not stalled), else 503 with the reasons;
//! - `GET /status`: every role on the node ([`NodeReport`] as JSON);
//! - `GET /cluster`: this node's view of every node of the config
//!   ([`ClusterHealth`] as JSON: it asks the other nodes' admin servers);
//! - `GET /metrics`: Prometheus text, rendered by
//!   `metrics-exporter-prometheus` from a recorder of this node's own;
//! - `GET /`: the dashboard, a page that polls `/cluster`.
//!
//! The counters the node already keeps (transport, client port, router,
//! role status) are read at scrape time and set as absolute values, so
//! nothing is counted twice; latencies feed histograms as they happen.
//! The node's state lives on its actix arbiter, so HTTP handlers ask
//! [`AdminActor`] for a snapshot.

use crate::client_server::ClientPortStats;
use crate::config::SynodConfig;
use crate::gateway::{Gateway, NodeStatus};
use crate::health::{self, ClusterHealth, NodeReport, Probe};
use crate::router::MessageCounts;
use actix::prelude::*;
use actix_web::{App, HttpResponse, HttpServer, web};
use metrics::{Counter, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use synod_core::{Role, RoleId};
use synod_storage::GroupObserver;
use synod_transport::TransportStats;

/// How often histogram samples are folded into their buckets (bounds the
/// memory they hold between scrapes).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// A learner whose applied slot has not moved for this long while its
/// node's proposer has decided past it is stalled (not ready).
const STALLED_AFTER: Duration = Duration::from_secs(10);

/// How long `/cluster` waits for each other node's `/status`.
const PEER_TIMEOUT: Duration = Duration::from_secs(1);

/// The dashboard page (no build step: plain HTML and script).
const DASHBOARD: &str = include_str!("dashboard.html");

/// One node's metrics registry.
pub(crate) struct NodeMetrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl NodeMetrics {
    pub(crate) fn new() -> Arc<Self> {
        let seconds = [
            0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25,
            0.5, 1.0, 5.0,
        ];
        let sizes = [
            1.0, 2.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0,
        ];
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_size".into()), &sizes))
            .expect("bucket lists are not empty")
            .build_recorder();
        let handle = recorder.handle();
        let metrics = Self { recorder, handle };
        metrics.with(describe);
        Arc::new(metrics)
    }

    fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, f)
    }

    /// The histogram of submit-to-answer times of this node's gateway.
    pub(crate) fn command_latency(&self) -> Histogram {
        self.with(|| histogram!("synod_command_seconds"))
    }

    /// What feeds `role`'s group commits into these metrics.
    pub(crate) fn store(&self, role: &str) -> Arc<dyn GroupObserver> {
        let role = role.to_owned();
        self.with(|| {
            Arc::new(StoreMetrics {
                seconds: histogram!("synod_group_commit_fsync_seconds", "role" => role.clone()),
                writes: histogram!("synod_group_commit_writes_size", "role" => role.clone()),
                submissions: histogram!("synod_group_commit_submissions_size", "role" => role.clone()),
                failures: counter!("synod_group_commit_failures_total", "role" => role),
            })
        })
    }
}

/// Help lines for the metrics whose names do not say it all.
fn describe() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_histogram!(
        "synod_group_commit_fsync_seconds",
        Unit::Seconds,
        "One group commit of a role's store: the synced write (WAL append and fsync) of every write in the group"
    );
    describe_histogram!(
        "synod_group_commit_writes_size",
        "Writes in one group commit"
    );
    describe_histogram!(
        "synod_group_commit_submissions_size",
        "Submissions (a role's batches of writes) in one group commit"
    );
    describe_histogram!(
        "synod_command_seconds",
        Unit::Seconds,
        "From a command entering this node's gateway to its answer from the learner"
    );
    describe_counter!(
        "synod_commands_decided_total",
        "Commands in the decided slots this learner applied, in log order (counting those in the snapshot it started from)"
    );
    describe_counter!(
        "synod_messages_sent_total",
        "Protocol messages this node's roles sent, by kind (accept: proposals, nack: refusals, prepare: elections)"
    );
}

/// A role's group-commit metrics: the latency of a group (its write and
/// fsync), its size in writes and in submissions, and failures.
struct StoreMetrics {
    seconds: Histogram,
    writes: Histogram,
    submissions: Histogram,
    failures: Counter,
}

impl GroupObserver for StoreMetrics {
    fn group(&self, submissions: usize, writes: usize, took: Duration, ok: bool) {
        self.seconds.record(took);
        self.writes.record(writes as f64);
        self.submissions.record(submissions as f64);
        if !ok {
            self.failures.increment(1);
        }
    }
}

/// What the admin server reads, owned by the node's arbiter.
pub(crate) struct AdminActor {
    pub(crate) config: Arc<SynodConfig>,
    pub(crate) gateway: Rc<Gateway>,
    pub(crate) transport: Arc<TransportStats>,
    pub(crate) clients: Arc<ClientPortStats>,
    pub(crate) sent: Rc<MessageCounts>,
    pub(crate) metrics: Arc<NodeMetrics>,
    /// Each learner's applied slot and when it last moved.
    pub(crate) progress: HashMap<String, (u64, Instant)>,
}

impl Actor for AdminActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(UPKEEP_EVERY, |actor, _| actor.metrics.handle.run_upkeep());
    }
}

/// What a page needs; `Send`, to cross to the HTTP worker.
#[derive(Message)]
#[rtype(result = "Snapshot")]
struct Collect;

struct Snapshot {
    report: NodeReport,
    reasons: Vec<String>,
    metrics: String,
}

impl Handler<Collect> for AdminActor {
    type Result = ResponseActFuture<Self, Snapshot>;

    fn handle(&mut self, _: Collect, _: &mut Context<Self>) -> Self::Result {
        let gateway = Rc::clone(&self.gateway);
        Box::pin(
            async move { gateway.status().await }
                .into_actor(self)
                .map(|status, actor, _| actor.snapshot(&status)),
        )
    }
}

impl AdminActor {
    fn snapshot(&mut self, status: &NodeStatus) -> Snapshot {
        let peers: BTreeMap<String, bool> = self
            .config
            .nodes
            .keys()
            .filter(|node| **node != status.node)
            .map(|node| (node.clone(), self.transport.peer(node).connected()))
            .collect();
        let report = NodeReport::of(status, peers);
        self.metrics.with(|| self.record(status, &report));
        Snapshot {
            reasons: self.unready(status, &report),
            metrics: self.metrics.handle.render(),
            report,
        }
    }

    /// Why this node's roles cannot make progress (empty: ready).
    fn unready(&mut self, status: &NodeStatus, report: &NodeReport) -> Vec<String> {
        let mut reasons: Vec<String> = report
            .stopped
            .iter()
            .map(|role| format!("{role} has stopped"))
            .collect();
        let acceptors: Vec<(RoleId, String)> = self
            .config
            .placement()
            .into_iter()
            .filter(|(role, _)| role.role == Role::Acceptor)
            .collect();
        let reachable: BTreeSet<u32> = acceptors
            .iter()
            .filter(|(role, node)| match report.peers.get(node) {
                Some(connected) => *connected,
                None => !report.stopped.contains(&role.to_string()), // on this node
            })
            .map(|(role, _)| role.index)
            .collect();
        let latest = crate::health::NodeReport::latest_membership([report]);
        let (ids, quorums) = crate::health::voting(&self.config, latest);
        if !quorums.phase2(&ids, &reachable) {
            reasons.push(format!(
                "{} of {} acceptors reachable; {}",
                reachable.len(),
                ids.len(),
                quorums.describe_phase2(ids.len())
            ));
        }
        for proposer in &report.proposers {
            if proposer.leader.is_none() {
                reasons.push(format!("{} knows no leader", proposer.id));
            }
        }
        reasons.extend(self.stalled(status));
        reasons
    }

    /// Learners whose applied slot has not moved for [`STALLED_AFTER`]
    /// while a proposer of this node has decided past it.
    fn stalled(&mut self, status: &NodeStatus) -> Vec<String> {
        let decided = status.proposers.iter().map(|p| p.first_unchosen).max();
        let now = Instant::now();
        let mut reasons = Vec::new();
        for learner in &status.learners {
            let id = learner.id.to_string();
            let (applied, since) = self
                .progress
                .entry(id.clone())
                .or_insert((learner.applied, now));
            if *applied != learner.applied {
                (*applied, *since) = (learner.applied, now);
            }
            let behind = decided.is_some_and(|d| d > learner.applied);
            if behind && now.duration_since(*since) >= STALLED_AFTER {
                reasons.push(format!(
                    "{id} has applied nothing for {:?} (applied below slot {}, decided below {})",
                    now.duration_since(*since),
                    learner.applied,
                    decided.unwrap_or(0)
                ));
            }
        }
        reasons
    }

    /// Set every gauge and counter from the node's own counters.
    fn record(&self, status: &NodeStatus, report: &NodeReport) {
        for p in &report.proposers {
            let role = p.id.clone();
            gauge!("synod_proposer_leading", "role" => role.clone())
                .set(f64::from(u8::from(p.ballot.is_some())));
            gauge!("synod_proposer_known_leader", "role" => role.clone())
                .set(f64::from(p.leader.unwrap_or(0)));
            gauge!("synod_proposer_ballot_round", "role" => role.clone())
                .set(p.ballot.map_or(0, |b| b.0) as f64);
            gauge!("synod_proposer_max_round", "role" => role.clone()).set(p.max_round as f64);
            counter!("synod_proposer_elections_won_total", "role" => role.clone())
                .absolute(p.elections_won);
            counter!("synod_proposer_leader_changes_total", "role" => role.clone())
                .absolute(p.leader_changes);
            gauge!("synod_proposer_decided_slots", "role" => role).set(p.decided_upto as f64);
        }
        for a in &report.acceptors {
            let role = a.id.clone();
            gauge!("synod_acceptor_promised_round", "role" => role.clone())
                .set(a.promised.0 as f64);
            gauge!("synod_acceptor_accepted_slots", "role" => role.clone())
                .set(a.accepted_slots as f64);
            gauge!("synod_acceptor_trimmed_below", "role" => role).set(a.trimmed_below as f64);
        }
        for (l, learner) in report.learners.iter().zip(&status.learners) {
            let role = l.id.clone();
            gauge!("synod_learner_applied_slots", "role" => role.clone()).set(l.applied as f64);
            gauge!("synod_learner_decided_slots_held", "role" => role.clone())
                .set(l.decided_held as f64);
            gauge!("synod_learner_compacted_below", "role" => role.clone())
                .set(l.compacted_below as f64);
            counter!("synod_commands_decided_total", "role" => role.clone())
                .absolute(l.commands_applied);
            counter!("synod_learner_snapshots_fetched_total", "role" => role)
                .absolute(learner.snapshots_fetched);
        }
        for role in &report.roles {
            let stopped = report.stopped.contains(role);
            gauge!("synod_role_stopped", "role" => role.clone()).set(f64::from(u8::from(stopped)));
        }
        counter!("synod_gateway_resends_total").absolute(report.resends);
        counter!("synod_commands_answered_total").absolute(report.commands_answered);
        for (kind, count) in self.sent.get() {
            counter!("synod_messages_sent_total", "kind" => kind).absolute(count);
        }
        self.record_transport();
        self.record_clients();
    }

    fn record_transport(&self) {
        let t = &self.transport;
        let counters: [(&'static str, &AtomicU64); 9] = [
            ("synod_transport_frames_sent_total", &t.frames_sent),
            ("synod_transport_frames_received_total", &t.frames_received),
            (
                "synod_transport_dropped_queue_full_total",
                &t.dropped_queue_full,
            ),
            (
                "synod_transport_dropped_unencodable_total",
                &t.dropped_unencodable,
            ),
            ("synod_transport_dropped_spoofed_total", &t.dropped_spoofed),
            (
                "synod_transport_handshakes_refused_total",
                &t.handshakes_refused,
            ),
            (
                "synod_transport_refused_unauthenticated_total",
                &t.refused_unauthenticated,
            ),
            (
                "synod_transport_closed_hostile_total",
                &t.connections_closed_hostile,
            ),
            ("synod_transport_connects_total", &t.connects),
        ];
        for (name, value) in counters {
            counter!(name).absolute(TransportStats::get(value));
        }
        for (peer, stats) in t.peers() {
            let peer = peer.to_string();
            let per_peer: [(&'static str, &AtomicU64); 5] = [
                ("synod_link_frames_sent_total", &stats.frames_sent),
                ("synod_link_bytes_sent_total", &stats.bytes_sent),
                ("synod_link_frames_received_total", &stats.frames_received),
                ("synod_link_bytes_received_total", &stats.bytes_received),
                (
                    "synod_link_dropped_queue_full_total",
                    &stats.dropped_queue_full,
                ),
            ];
            for (name, value) in per_peer {
                counter!(name, "peer" => peer.clone()).absolute(TransportStats::get(value));
            }
            gauge!("synod_link_queued_frames", "peer" => peer.clone())
                .set(TransportStats::get(&stats.queued) as f64);
            gauge!("synod_link_connected", "peer" => peer)
                .set(f64::from(u8::from(stats.connected())));
        }
    }

    fn record_clients(&self) {
        let c = &self.clients;
        let load = |v: &AtomicUsize| v.load(Ordering::Relaxed) as f64;
        gauge!("synod_client_connections_open").set(load(&c.open));
        gauge!("synod_client_peak_in_flight").set(load(&c.peak_in_flight));
        counter!("synod_client_connections_turned_away_total")
            .absolute(c.turned_away.load(Ordering::Relaxed));
        counter!("synod_client_connections_closed_idle_total")
            .absolute(c.closed_idle.load(Ordering::Relaxed));
    }
}

type Source = web::Data<Addr<AdminActor>>;

async fn collect(source: &Source) -> Result<Snapshot, HttpResponse> {
    source
        .send(Collect)
        .await
        .map_err(|_| HttpResponse::ServiceUnavailable().body("the node is stopping\n"))
}

async fn livez() -> HttpResponse {
    HttpResponse::Ok().body("ok\n")
}

async fn readyz(source: Source) -> HttpResponse {
    match collect(&source).await {
        Ok(s) if s.reasons.is_empty() => {
            HttpResponse::Ok().json(serde_json::json!({"ready": true}))
        }
        Ok(s) => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({"ready": false, "reasons": s.reasons})),
        Err(response) => response,
    }
}

async fn status(source: Source) -> HttpResponse {
    match collect(&source).await {
        Ok(s) => HttpResponse::Ok().json(s.report),
        Err(response) => response,
    }
}

async fn metrics_page(source: Source) -> HttpResponse {
    match collect(&source).await {
        Ok(s) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(s.metrics),
        Err(response) => response,
    }
}

async fn cluster(source: Source, config: web::Data<Arc<SynodConfig>>) -> HttpResponse {
    let own = match collect(&source).await {
        Ok(s) => s.report,
        Err(response) => return response,
    };
    HttpResponse::Ok().json(cluster_view(&config, own).await)
}

/// This node's view of the cluster: its own report, every other node's
/// admin `/status` (asked at once, each within [`PEER_TIMEOUT`]), and for
/// a node without an admin server, whether it is connected to this one.
async fn cluster_view(config: &SynodConfig, own: NodeReport) -> ClusterHealth {
    let asked = config
        .nodes
        .iter()
        .filter(|(name, _)| **name != own.node)
        .map(|(name, node)| {
            let connected = own.peers.get(name).copied().unwrap_or(false);
            let admin = node.admin_listen.map(|bound| node.reachable(bound));
            let name = name.clone();
            async move {
                let probe = match admin {
                    Some(address) => {
                        web::block(move || health::fetch_report(&address, PEER_TIMEOUT))
                            .await
                            .map_err(|e| e.to_string())
                            .and_then(|fetched| fetched)
                            .map_or_else(
                                |error| Probe::Unreachable { error },
                                |report| Probe::Answered { report },
                            )
                    }
                    None if connected => Probe::Listening,
                    None => Probe::Unreachable {
                        error: "no admin server, and not connected to this node".into(),
                    },
                };
                (name, probe)
            }
        });
    let mut probes: BTreeMap<String, Probe> = futures_util::future::join_all(asked)
        .await
        .into_iter()
        .collect();
    probes.insert(own.node.clone(), Probe::Answered { report: own });
    health::assess(config, probes)
}

async fn dashboard() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(DASHBOARD)
}

/// Serve the admin pages on `listener` until the returned handle stops.
pub(crate) fn serve(
    listener: std::net::TcpListener,
    admin: Addr<AdminActor>,
    config: Arc<SynodConfig>,
) -> std::io::Result<actix_web::dev::ServerHandle> {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(admin.clone()))
            .app_data(web::Data::new(Arc::clone(&config)))
            .route("/", web::get().to(dashboard))
            .route("/livez", web::get().to(livez))
            .route("/readyz", web::get().to(readyz))
            .route("/status", web::get().to(status))
            .route("/cluster", web::get().to(cluster))
            .route("/metrics", web::get().to(metrics_page))
    })
    .workers(1)
    // Signals are the embedding application's (and `synod`'s) to handle.
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    let handle = server.handle();
    actix::spawn(async move {
        if let Err(error) = server.await {
            tracing::warn!(%error, "admin server stopped");
        }
    });
    Ok(handle)
}
