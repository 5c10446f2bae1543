//! The daemon's HTTP edges: the local API on a Unix socket and the
//! Prometheus metrics on a TCP address. Thin: each handler parses the
//! request, sends an event to the daemon's event loop, awaits the answer
//! and maps it to an HTTP status; every decision is the daemon's. A loop
//! that is gone or does not answer within `event_loop::ANSWER_TIMEOUT`
//! gets a 503 that says so, never a request that hangs.
use std::{fmt::Write as _, net::SocketAddr};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;

use crate::{
    api::{ApiError, Change},
    config::Config,
    daemon::{
        ChangeError, Event, Handle, LoopError,
        event_loop::{Metrics, STANDALONE},
    },
    health::Health,
    neighbours::Resolution,
};

/// The local API (see `api` for the table of routes).
pub fn api_router(daemon: Handle) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/services", get(services))
        .route("/v1/stats", get(stats))
        .route("/v1/alerts", get(alerts))
        .route("/v1/config", get(export).put(import))
        .route("/v1/changes", post(change))
        .route("/v1/cluster/{operation}", post(cluster_operation))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such API route (see lb-ctl --help)".into(),
            )
        })
        .with_state(daemon)
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(ApiError { error: message })).into_response()
}

fn change_error(err: ChangeError) -> Response {
    let status = match err {
        ChangeError::Invalid(_) => StatusCode::BAD_REQUEST,
        ChangeError::NotFound(_) => StatusCode::NOT_FOUND,
        ChangeError::Conflict(_) => StatusCode::CONFLICT,
        ChangeError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, err.to_string())
}

/// The daemon's event loop did not answer (stopped or stalled): 503.
fn loop_error(err: LoopError) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, err.to_string())
}

/// Asks the daemon's event loop and answers with its JSON.
async fn ask<T: serde::Serialize>(
    daemon: &Handle,
    request: impl FnOnce(tokio::sync::oneshot::Sender<T>) -> Event,
) -> Response {
    match daemon.ask(request).await {
        Ok(answer) => Json(answer).into_response(),
        Err(err) => loop_error(err),
    }
}

/// A change's answer: its result, or why it was not applied.
fn applied(answer: Result<Result<crate::api::Applied, ChangeError>, LoopError>) -> Response {
    match answer {
        Ok(Ok(applied)) => Json(applied).into_response(),
        Ok(Err(err)) => change_error(err),
        Err(err) => loop_error(err),
    }
}

async fn status(State(daemon): State<Handle>) -> Response {
    ask(&daemon, Event::Status).await
}

async fn services(State(daemon): State<Handle>) -> Response {
    ask(&daemon, Event::Services).await
}

async fn stats(State(daemon): State<Handle>) -> Response {
    match daemon.ask(Event::Stats).await {
        Ok(Ok(stats)) => Json(stats).into_response(),
        Ok(Err(err)) => error(StatusCode::INTERNAL_SERVER_ERROR, err),
        Err(err) => loop_error(err),
    }
}

#[derive(Deserialize)]
struct AlertsQuery {
    limit: Option<usize>,
}

async fn alerts(State(daemon): State<Handle>, Query(q): Query<AlertsQuery>) -> Response {
    let limit = q.limit.unwrap_or(50).min(10_000);
    ask(&daemon, |answer| Event::Alerts { limit, answer }).await
}

async fn export(State(daemon): State<Handle>) -> Response {
    ask(&daemon, Event::ExportConfig).await
}

/// A body that is not the expected JSON gets a 400 with serde's words
/// (axum's own rejection would do too, but says less).
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid request body: {e}"))
}

async fn import(State(daemon): State<Handle>, body: axum::body::Bytes) -> Response {
    let config: Config = match parse(&body) {
        Ok(c) => c,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    applied(
        daemon
            .ask(|answer| Event::ImportConfig {
                config: Box::new(config),
                answer,
            })
            .await,
    )
}

async fn change(State(daemon): State<Handle>, body: axum::body::Bytes) -> Response {
    let change: Change = match parse(&body) {
        Ok(c) => c,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    applied(daemon.ask(|answer| Event::Change { change, answer }).await)
}

/// `POST /v1/cluster/{failover,failback,stop,force-stop,start}`: asks the
/// cluster's event loop (the daemon's loop only says where it is); answers
/// what was done, or refuses (409) with the reason when it cannot be done
/// now.
async fn cluster_operation(
    State(daemon): State<Handle>,
    axum::extract::Path(operation): axum::extract::Path<String>,
) -> Response {
    use crate::cluster::node::Operation;
    if operation == "sync" {
        return cluster_sync(daemon).await;
    }
    let name = operation;
    let operation = match name.as_str() {
        "failover" => Operation::Failover,
        "failback" => Operation::Failback,
        "stop" => Operation::Stop,
        "force-stop" => Operation::ForceStop,
        "start" => Operation::Start,
        other => {
            return error(
                StatusCode::NOT_FOUND,
                format!(
                    "no cluster operation {other:?} (failover, failback, stop, force-stop, start, sync)"
                ),
            );
        }
    };
    let operations = match daemon.ask(Event::ClusterRoute).await {
        Ok(Some(operations)) => operations,
        Ok(None) => return error(StatusCode::CONFLICT, STANDALONE.into()),
        Err(err) => return loop_error(err),
    };
    let (answer, result) = tokio::sync::oneshot::channel();
    if operations.send((operation, answer)).await.is_err() {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the cluster's event loop is not running".into(),
        );
    }
    match result.await {
        Ok(Ok(message)) => Json(serde_json::json!({
            "accepted": name,
            "message": message,
        }))
        .into_response(),
        Ok(Err(refusal)) => error(StatusCode::CONFLICT, refusal),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the cluster's event loop did not answer".into(),
        ),
    }
}

/// `POST /v1/cluster/sync`: pushes the settings to the standby now (on the
/// active); 409 with the reason when the peer did not take them (or this
/// node is standalone or standby).
async fn cluster_sync(daemon: Handle) -> Response {
    match daemon.ask(Event::SyncNow).await {
        Ok(Ok(done)) => Json(serde_json::json!({ "synchronized": done })).into_response(),
        Ok(Err(why)) => error(StatusCode::CONFLICT, why),
        Err(err) => loop_error(err),
    }
}

/// The pair as this node sees it: its role, the peer, each interconnect,
/// the monitor failovers counted and the heartbeats refused by reason.
fn cluster_metrics(out: &mut String, cluster: &crate::cluster::node::ClusterStatus) {
    use crate::role::Role;
    gauge(
        out,
        "lb_cluster_active",
        "This node holds the group (1) or not (0).",
        u64::from(cluster.role == Some(Role::Active)),
    );
    gauge(
        out,
        "lb_cluster_peer_alive",
        "The peer is heard on some interconnect (1) or lost (0).",
        u64::from(cluster.peer_alive),
    );
    let _ = writeln!(
        out,
        "# HELP lb_cluster_failovers_total Failovers to this node (the group taken from a lost or yielding peer) since the daemon started.\n# TYPE lb_cluster_failovers_total counter\nlb_cluster_failovers_total {}",
        cluster.takeovers.count
    );
    gauge(
        out,
        "lb_cluster_monitor_failovers",
        "Failovers a failed monitor caused, counted against the maximum failover count (until its reset).",
        cluster.failovers as u64,
    );
    let _ = writeln!(
        out,
        "# HELP lb_cluster_interconnect_up The peer is heard on the interconnect (1) or not (0).\n# TYPE lb_cluster_interconnect_up gauge"
    );
    for (name, up) in &cluster.links {
        let _ = writeln!(
            out,
            "lb_cluster_interconnect_up{{interconnect=\"{}\"}} {}",
            label(name),
            u64::from(*up)
        );
    }
    let _ = writeln!(
        out,
        "# HELP lb_cluster_heartbeats_refused_total Heartbeats refused, by reason (forged, replayed, malformed...).\n# TYPE lb_cluster_heartbeats_refused_total counter"
    );
    for (reason, count) in &cluster.refused {
        let _ = writeln!(
            out,
            "lb_cluster_heartbeats_refused_total{{reason=\"{}\"}} {count}",
            label(reason)
        );
    }
}

/// The flow replication's metrics (`lb_replication_*`).
fn replication_metrics(out: &mut String, r: &crate::replication::status::ReplicationStatus) {
    use crate::replication::status::StreamRole;
    let gauges: [(&str, &str, u64); 6] = [
        (
            "lb_replication_sending",
            "This node sends its flows to the standby (1: active).",
            u64::from(r.stream == StreamRole::Sending),
        ),
        (
            "lb_replication_connected",
            "A replication connection with the peer is up (1) or not (0).",
            u64::from(r.connected),
        ),
        (
            "lb_replication_caught_up",
            "The stream is caught up: the bulk copy acknowledged (sending) or applied (receiving).",
            u64::from(r.caught_up),
        ),
        (
            "lb_replication_lag_messages",
            "Messages sent and not yet acknowledged.",
            r.lag_messages,
        ),
        (
            "lb_replication_lag_flows",
            "Flows in the messages not yet acknowledged.",
            r.lag_flows,
        ),
        (
            "lb_replication_lag_ms",
            "How long the oldest unacknowledged message has waited (ms).",
            r.lag_ms,
        ),
    ];
    for (name, help, value) in gauges {
        gauge(out, name, help, value);
    }
    let counters: [(&str, &str, u64); 12] = [
        (
            "lb_replication_messages_total",
            "Messages sent (active) or applied (standby).",
            r.messages,
        ),
        (
            "lb_replication_flows_total",
            "Flows sent (active) or written into the tables (standby).",
            r.flows,
        ),
        (
            "lb_replication_refreshed_flows_total",
            "Live flows sent again by the periodic refresh.",
            r.refreshed,
        ),
        (
            "lb_replication_resends_total",
            "Messages sent again after a gap report or a timeout.",
            r.resends,
        ),
        (
            "lb_replication_gaps_total",
            "Gaps reported (standby) or heard of (active).",
            r.gaps,
        ),
        (
            "lb_replication_resyncs_total",
            "Resyncs (bulk copies) started (active) or epochs begun (standby).",
            r.resyncs,
        ),
        (
            "lb_replication_records_lost_total",
            "New flows the program could not report (the ring was full).",
            r.records_lost,
        ),
        (
            "lb_replication_unknown_service_total",
            "Replicated flows not applied: their service is not configured here.",
            r.unknown_service,
        ),
        (
            "lb_replication_unknown_backend_total",
            "Replicated flows not applied: their backend is not configured here.",
            r.unknown_backend,
        ),
        (
            "lb_replication_stale_total",
            "Messages of an older epoch (replays, stragglers) ignored.",
            r.stale,
        ),
        (
            "lb_replication_garbage_total",
            "Frames that did not decode (the connection was closed, nothing applied).",
            r.garbage,
        ),
        (
            "lb_replication_refused_connections_total",
            "Connections refused at the TLS handshake.",
            r.refused_connections,
        ),
    ];
    for (name, help, value) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
}

/// Prometheus metrics at `/metrics`.
pub fn metrics_router(daemon: Handle) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(daemon)
}

async fn metrics(State(daemon): State<Handle>) -> Response {
    let Metrics {
        status,
        counters,
        services,
    } = match daemon.ask(Event::Metrics).await {
        Ok(metrics) => metrics,
        Err(err) => return loop_error(err),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP lb_info The daemon's version and node.\n# TYPE lb_info gauge"
    );
    let _ = writeln!(
        out,
        "lb_info{{version=\"{}\",node=\"{}\"}} 1",
        label(&status.version),
        label(&status.node)
    );
    gauge(
        &mut out,
        "lb_config_generation",
        "Configuration generation applied.",
        status.generation,
    );
    gauge(
        &mut out,
        "lb_uptime_seconds",
        "Seconds since the daemon started.",
        status.uptime_seconds,
    );
    if let Some(sync) = status.cluster.as_ref().and_then(|c| c.sync.as_ref()) {
        gauge(
            &mut out,
            "lb_cluster_settings_synchronized",
            "The peer took this node's last settings push (1), or not (0).",
            u64::from(matches!(
                sync,
                crate::cluster::node::SyncState::Synchronized { .. }
            )),
        );
    }
    if let Some(cluster) = &status.cluster {
        cluster_metrics(&mut out, cluster);
        if let Some(replication) = &cluster.replication {
            replication_metrics(&mut out, replication);
        }
    }
    if let Some(counters) = counters {
        let _ = writeln!(
            out,
            "# HELP lb_packets_total Packets by outcome (pass_*, drop_*, forwarded).\n# TYPE lb_packets_total counter"
        );
        for (name, value) in counters {
            let _ = writeln!(out, "lb_packets_total{{outcome=\"{name}\"}} {value}");
        }
    }
    type Family = (&'static str, &'static str, fn(&crate::api::Traffic) -> u64);
    let families: [Family; 3] = [
        ("packets", "Packets", |t| t.packets),
        ("bytes", "Bytes", |t| t.bytes),
        ("new_flows", "New flows", |t| t.new_flows),
    ];
    for (name, help, value) in families {
        let _ = writeln!(
            out,
            "# HELP lb_service_{name}_total {help} to the service (both directions for NAT).\n# TYPE lb_service_{name}_total counter"
        );
        for s in &services {
            let _ = writeln!(
                out,
                "lb_service_{name}_total{{service=\"{}\"}} {}",
                s.service,
                value(&s.traffic)
            );
        }
        backend_family(
            &mut out,
            &services,
            &format!("lb_backend_{name}_total"),
            "counter",
            &format!("{help} through the backend."),
            |b| value(&b.traffic),
        );
    }
    backend_family(
        &mut out,
        &services,
        "lb_backend_up",
        "gauge",
        "Health check state (1 up, 0 down).",
        |b| u64::from(b.health == Health::Up),
    );
    backend_family(
        &mut out,
        &services,
        "lb_backend_neighbour_resolved",
        "gauge",
        "The next hop towards the backend is resolved (1), or not (0).",
        |b| u64::from(b.neighbour == Resolution::Resolved),
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// One metric family with a line per backend of every service.
fn backend_family(
    out: &mut String,
    services: &[crate::api::ServiceView],
    metric: &str,
    kind: &str,
    help: &str,
    value: impl Fn(&crate::api::BackendView) -> u64,
) {
    let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} {kind}");
    for s in services {
        for b in &s.backends {
            let _ = writeln!(
                out,
                "{metric}{{service=\"{}\",backend=\"{}\"}} {}",
                s.service,
                b.address,
                value(b)
            );
        }
    }
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

/// Escapes a Prometheus label value.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Serves the metrics until the process ends.
pub async fn serve_metrics(addr: SocketAddr, daemon: Handle) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("metrics: cannot listen on {addr}: {e}"))?;
    tracing::info!(%addr, "metrics on /metrics");
    axum::serve(listener, metrics_router(daemon)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::status::{ReplicationStatus, StreamRole};

    #[test]
    fn replication_metrics_have_their_names_types_and_values() {
        let mut out = String::new();
        replication_metrics(
            &mut out,
            &ReplicationStatus {
                stream: StreamRole::Receiving,
                connected: true,
                caught_up: true,
                flows: 42,
                records_lost: 3,
                garbage: 1,
                ..Default::default()
            },
        );
        for line in [
            "# TYPE lb_replication_caught_up gauge",
            "lb_replication_caught_up 1",
            "lb_replication_sending 0",
            "# TYPE lb_replication_flows_total counter",
            "lb_replication_flows_total 42",
            "lb_replication_records_lost_total 3",
            "lb_replication_garbage_total 1",
            "lb_replication_lag_ms 0",
        ] {
            assert!(
                out.lines().any(|l| l == line),
                "{line} missing from:\n{out}"
            );
        }
    }
}
