//! The Prometheus metrics at `/metrics`: the daemon, the data plane's
//! counters, each service and backend, the pair and the flow replication.
//! Read in one pass of the daemon's event loop (`Event::Metrics`).
use std::{fmt::Write as _, net::SocketAddr};

use axum::{
    Router,
    extract::State,
    http::header,
    response::{IntoResponse, Response},
    routing::get,
};

use super::loop_error;

/// The data plane's counters of flows (`flows_unconfirmed`...), which are
/// `lb_flows_total{stage}` rather than packet outcomes.
const FLOWS_PREFIX: &str = "flows_";
use crate::{
    daemon::{Event, Handle, event_loop::Metrics},
    health::Health,
    neighbours::Resolution,
};

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
    counter(
        out,
        "lb_cluster_failovers_total",
        "Failovers to this node (the group taken from a lost or yielding peer) since the daemon started.",
        cluster.takeovers.count,
    );
    gauge(
        out,
        "lb_cluster_monitor_failovers",
        "Failovers a failed monitor caused, counted against the maximum failover count (until its reset).",
        cluster.failovers as u64,
    );
    family(
        out,
        "lb_cluster_interconnect_up",
        "gauge",
        "The peer is heard on the interconnect (1) or not (0).",
        "interconnect",
        cluster
            .links
            .iter()
            .map(|(name, up)| (name.as_str(), u64::from(*up))),
    );
    family(
        out,
        "lb_cluster_heartbeats_refused_total",
        "counter",
        "Heartbeats refused, by reason (forged, replayed, malformed...).",
        "reason",
        cluster
            .refused
            .iter()
            .map(|(reason, n)| (reason.as_str(), *n)),
    );
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
    let counters: [(&str, &str, u64); 15] = [
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
            "lb_replication_duplicates_total",
            "Messages already applied or already held (resent copies, replays) ignored.",
            r.duplicates,
        ),
        (
            "lb_replication_stale_total",
            "Messages of an older epoch (replays, stragglers) ignored.",
            r.stale,
        ),
        (
            "lb_replication_foreign_total",
            "Messages of the current epoch on another connection than the stream's, ignored.",
            r.foreign,
        ),
        (
            "lb_replication_dropped_total",
            "Messages ahead of a gap dropped unacknowledged (no room to hold them).",
            r.dropped,
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
        counter(out, name, help, value);
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
        let (flows, packets): (Vec<_>, Vec<_>) = counters
            .iter()
            .partition(|(name, _)| name.starts_with(FLOWS_PREFIX));
        for (name, value) in packets {
            let _ = writeln!(out, "lb_packets_total{{outcome=\"{name}\"}} {value}");
        }
        let _ = writeln!(
            out,
            "# HELP lb_flows_total Flows the program pinned unconfirmed (first packets), confirmed (the client's second packet), and TCP packets of flows it held no entry for (midstream).\n# TYPE lb_flows_total counter"
        );
        for (name, value) in flows {
            let stage = &name[FLOWS_PREFIX.len()..];
            let _ = writeln!(out, "lb_flows_total{{stage=\"{stage}\"}} {value}");
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

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

/// A metric of `kind` with one value per value of the label `key`.
fn family<'a>(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    key: &str,
    values: impl IntoIterator<Item = (&'a str, u64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (value_of_key, value) in values {
        let _ = writeln!(out, "{name}{{{key}=\"{}\"}} {value}", label(value_of_key));
    }
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
                duplicates: 4,
                stale: 5,
                dropped: 6,
                foreign: 7,
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
            "lb_replication_duplicates_total 4",
            "lb_replication_stale_total 5",
            "lb_replication_dropped_total 6",
            "lb_replication_foreign_total 7",
            "lb_replication_lag_ms 0",
        ] {
            assert!(
                out.lines().any(|l| l == line),
                "{line} missing from:\n{out}"
            );
        }
    }
}
