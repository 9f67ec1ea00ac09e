//! The admin HTTP server of a node (`nodes.NAME.admin_listen`, actix-web):
//!
//! - `GET /livez`: 200 while the process serves;
//! - `GET /readyz`: 200 when this node's roles can make progress (none
//!   stopped, a majority of the acceptors reachable, its proposers know a
//!   leader), else 503 with the reasons;
//! - `GET /status`: every role on the node as JSON;
//! - `GET /metrics`: Prometheus text, rendered by
//!   `metrics-exporter-prometheus` from a recorder of this node's own.
//!
//! The counters the node already keeps (`TransportStats`,
//! `ClientPortStats`, role status) are read at scrape time and set as
//! absolute values, so nothing is counted twice; group commits feed
//! histograms as they happen ([`StoreMetrics`]). The node's state lives on
//! its actix arbiter, so HTTP handlers ask [`AdminActor`] for a snapshot.

use crate::client_server::ClientPortStats;
use crate::gateway::{Gateway, NodeStatus};
use actix::prelude::*;
use actix_web::{App, HttpResponse, HttpServer, web};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use serde_json::{Value, json};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use synod_core::{Role, RoleId};
use synod_storage::GroupObserver;
use synod_transport::{PeerPresence, TransportStats};

/// How often histogram samples are folded into their buckets (bounds the
/// memory they hold between scrapes).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// One node's metrics registry.
pub(crate) struct NodeMetrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl NodeMetrics {
    pub(crate) fn new() -> Arc<Self> {
        let seconds = [
            0.000_1, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
        ];
        let sizes = [1.0, 2.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0];
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_writes".into()), &sizes))
            .expect("bucket lists are not empty")
            .build_recorder();
        let handle = recorder.handle();
        Arc::new(Self { recorder, handle })
    }

    fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, f)
    }
}

/// Feeds a role's group commits into the node's metrics.
pub(crate) struct StoreMetrics {
    pub(crate) metrics: Arc<NodeMetrics>,
    pub(crate) role: String,
}

impl GroupObserver for StoreMetrics {
    fn group(&self, submissions: usize, writes: usize, took: Duration, ok: bool) {
        let role = self.role.clone();
        self.metrics.with(|| {
            histogram!("synod_group_commit_seconds", "role" => role.clone())
                .record(took.as_secs_f64());
            histogram!("synod_group_commit_writes", "role" => role.clone()).record(writes as f64);
            counter!("synod_group_commit_submissions_total", "role" => role.clone())
                .increment(submissions as u64);
            if !ok {
                counter!("synod_group_commit_failures_total", "role" => role).increment(1);
            }
        });
    }
}

/// What the admin server reads, owned by the node's arbiter.
pub(crate) struct AdminActor {
    pub(crate) gateway: Rc<Gateway>,
    pub(crate) transport: Arc<TransportStats>,
    pub(crate) clients: Arc<ClientPortStats>,
    pub(crate) presence: Arc<PeerPresence>,
    /// Every acceptor of the configuration and its node.
    pub(crate) acceptors: Vec<(RoleId, String)>,
    /// The other nodes.
    pub(crate) peers: Vec<String>,
    pub(crate) metrics: Arc<NodeMetrics>,
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
    status: Value,
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
    fn snapshot(&self, status: &NodeStatus) -> Snapshot {
        let connected: Vec<(String, bool)> = self
            .peers
            .iter()
            .map(|peer| (peer.clone(), self.presence.is_connected(peer)))
            .collect();
        self.metrics.with(|| self.record(status, &connected));
        Snapshot {
            status: status_json(status, &connected),
            reasons: self.unready(status),
            metrics: self.metrics.handle.render(),
        }
    }

    /// Why this node's roles cannot make progress (empty: ready).
    fn unready(&self, status: &NodeStatus) -> Vec<String> {
        let mut reasons: Vec<String> = status
            .stopped
            .iter()
            .map(|role| format!("{role} has stopped"))
            .collect();
        let reachable = self
            .acceptors
            .iter()
            .filter(|(role, node)| {
                if *node == status.node {
                    !status.stopped.contains(role)
                } else {
                    self.presence.is_connected(node)
                }
            })
            .count();
        let majority = self.acceptors.len() / 2 + 1;
        if reachable < majority {
            reasons.push(format!(
                "{reachable} of {} acceptors reachable; a majority is {majority}",
                self.acceptors.len()
            ));
        }
        for proposer in &status.proposers {
            if proposer.leader.is_none() {
                reasons.push(format!("{} knows no leader", proposer.id));
            }
        }
        reasons
    }

    /// Set every gauge and counter from the node's own counters.
    fn record(&self, status: &NodeStatus, connected: &[(String, bool)]) {
        for p in &status.proposers {
            let role = p.id.to_string();
            let leading = p.leading_ballot.is_some();
            gauge!("synod_proposer_leading", "role" => role.clone()).set(f64::from(u8::from(leading)));
            gauge!("synod_proposer_leader", "role" => role.clone())
                .set(f64::from(p.leader.unwrap_or(0)));
            gauge!("synod_proposer_ballot_round", "role" => role.clone())
                .set(p.leading_ballot.map_or(0, |b| b.round) as f64);
            gauge!("synod_proposer_max_round", "role" => role.clone()).set(p.max_round as f64);
            gauge!("synod_proposer_decided_upto", "role" => role).set(p.first_unchosen as f64);
        }
        for a in &status.acceptors {
            let role = a.id.to_string();
            gauge!("synod_acceptor_promised_round", "role" => role.clone())
                .set(a.promised.round as f64);
            gauge!("synod_acceptor_accepted_slots", "role" => role.clone()).set(a.accepted as f64);
            gauge!("synod_acceptor_trimmed_below", "role" => role).set(a.trimmed_below as f64);
        }
        for l in &status.learners {
            let role = l.id.to_string();
            gauge!("synod_learner_applied_slot", "role" => role.clone()).set(l.applied as f64);
            gauge!("synod_learner_decided_slots_held", "role" => role.clone()).set(l.decided as f64);
            gauge!("synod_learner_compacted_below", "role" => role.clone())
                .set(l.compacted_below as f64);
            counter!("synod_learner_commands_applied_total", "role" => role.clone())
                .absolute(l.commands_applied);
            counter!("synod_learner_snapshots_fetched_total", "role" => role)
                .absolute(l.snapshots_fetched);
        }
        for role in &status.roles {
            let stopped = status.stopped.contains(role);
            gauge!("synod_role_stopped", "role" => role.to_string()).set(f64::from(u8::from(stopped)));
        }
        counter!("synod_gateway_resends_total").absolute(status.resends);
        for (peer, up) in connected {
            gauge!("synod_peer_connected", "peer" => peer.clone()).set(f64::from(u8::from(*up)));
        }
        self.record_transport();
        self.record_clients();
    }

    fn record_transport(&self) {
        let t = &self.transport;
        let counters: [(&'static str, &AtomicU64); 9] = [
            ("synod_transport_frames_sent_total", &t.frames_sent),
            ("synod_transport_frames_received_total", &t.frames_received),
            ("synod_transport_dropped_queue_full_total", &t.dropped_queue_full),
            ("synod_transport_dropped_unencodable_total", &t.dropped_unencodable),
            ("synod_transport_dropped_spoofed_total", &t.dropped_spoofed),
            ("synod_transport_handshakes_refused_total", &t.handshakes_refused),
            ("synod_transport_refused_unauthenticated_total", &t.refused_unauthenticated),
            ("synod_transport_connections_closed_hostile_total", &t.connections_closed_hostile),
            ("synod_transport_connects_total", &t.connects),
        ];
        for (name, value) in counters {
            counter!(name).absolute(value.load(Ordering::Relaxed));
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

fn status_json(status: &NodeStatus, connected: &[(String, bool)]) -> Value {
    let ids = |roles: &[RoleId]| roles.iter().map(ToString::to_string).collect::<Vec<_>>();
    json!({
        "node": status.node,
        "roles": ids(&status.roles),
        "stopped": ids(&status.stopped),
        "proposers": status.proposers.iter().map(|p| json!({
            "id": p.id.to_string(),
            "leader": p.leader,
            "ballot": p.leading_ballot.map(|b| [b.round, u64::from(b.proposer)]),
            "decided_upto": p.first_unchosen,
            "max_round": p.max_round,
        })).collect::<Vec<_>>(),
        "acceptors": status.acceptors.iter().map(|a| json!({
            "id": a.id.to_string(),
            "promised": [a.promised.round, u64::from(a.promised.proposer)],
            "accepted_slots": a.accepted,
            "trimmed_below": a.trimmed_below,
        })).collect::<Vec<_>>(),
        "learners": status.learners.iter().map(|l| json!({
            "id": l.id.to_string(),
            "applied": l.applied,
            "decided_held": l.decided,
            "commands_applied": l.commands_applied,
            "compacted_below": l.compacted_below,
        })).collect::<Vec<_>>(),
        "peers": connected.iter().map(|(p, up)| (p.clone(), json!(up))).collect::<serde_json::Map<_, _>>(),
        "resends": status.resends,
    })
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
        Ok(s) if s.reasons.is_empty() => HttpResponse::Ok().json(json!({"ready": true})),
        Ok(s) => HttpResponse::ServiceUnavailable().json(json!({"ready": false, "reasons": s.reasons})),
        Err(response) => response,
    }
}

async fn status(source: Source) -> HttpResponse {
    match collect(&source).await {
        Ok(s) => HttpResponse::Ok().json(s.status),
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

/// Serve the admin pages on `listener` until the returned handle stops.
pub(crate) fn serve(
    listener: std::net::TcpListener,
    admin: Addr<AdminActor>,
) -> std::io::Result<actix_web::dev::ServerHandle> {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(admin.clone()))
            .route("/livez", web::get().to(livez))
            .route("/readyz", web::get().to(readyz))
            .route("/status", web::get().to(status))
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

/// Every acceptor of `config` with its node.
pub(crate) fn acceptors(config: &crate::SynodConfig) -> Vec<(RoleId, String)> {
    config
        .placement()
        .into_iter()
        .filter(|(role, _)| role.role == Role::Acceptor)
        .collect()
}
