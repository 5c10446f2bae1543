//! Output for people: aligned tables and readable numbers.

use crate::{api::BackendView, neighbours::Resolution};

/// An aligned table: the first row is the header. Columns are separated by
/// two spaces; the last column is not padded.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// 1234567 -> "1.2 M" (decimal units; exact below 1000).
pub fn count(n: u64) -> String {
    scaled(n as f64, "")
}

/// Bytes: 3400000000 -> "3.4 GB".
pub fn bytes(n: u64) -> String {
    if n < 1000 {
        return format!("{n} B");
    }
    scaled(n as f64, "B")
}

/// A rate per second with its unit: (1.2e6, "pps") -> "1.2 Mpps".
pub fn rate(per_second: f64, unit: &str) -> String {
    if per_second < 1000.0 {
        return format!("{per_second:.0} {unit}");
    }
    scaled(per_second, unit)
}

fn scaled(value: f64, unit: &str) -> String {
    const PREFIXES: [&str; 6] = ["", "k", "M", "G", "T", "P"];
    if value < 1000.0 {
        return if unit.is_empty() {
            format!("{value:.0}")
        } else {
            format!("{value:.0} {unit}")
        };
    }
    let mut v = value;
    let mut p = 0;
    while v >= 999.95 && p + 1 < PREFIXES.len() {
        v /= 1000.0;
        p += 1;
    }
    format!("{v:.1} {}{unit}", PREFIXES[p])
}

/// A backend's neighbour: `resolved`, or what is wrong with the next hop:
/// `unresolved (198.18.1.1 on int0)`.
pub fn neighbour(backend: &BackendView) -> String {
    match (&backend.next_hop, backend.neighbour) {
        (Some(hop), Resolution::Unresolved | Resolution::Resolving) => {
            format!(
                "{} ({} on {})",
                backend.neighbour, hop.address, hop.interface
            )
        }
        _ => backend.neighbour.to_string(),
    }
}

/// 3725 -> "1h 2m 5s".
pub fn duration(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds % 86_400 / 3600,
        seconds % 3600 / 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m {s}s"),
        _ => format!("{d}d {h}h {m}m"),
    }
}

/// The cluster's rows of `lb-ctl status`, as the manual's cluster manager
/// shows it: role and since when, the peer, each interconnect and monitor.
pub fn cluster_rows(c: &crate::cluster::node::ClusterStatus) -> Vec<Vec<String>> {
    let role = match c.role {
        None => "starting".to_owned(),
        Some(_) if c.stopped => {
            "Offline: cluster service stopped (`lb-ctl cluster start` starts it)".to_owned()
        }
        Some(role) if c.stopping => format!("{role}, stopping: handing the group to the peer"),
        Some(role) => role.to_string(),
    };
    let peer = match (c.peer_alive, c.peer_role) {
        (true, Some(_)) if c.peer_stopped => {
            let alone = if c.role == Some(crate::cluster::Role::Active) {
                ": this node has no standby"
            } else {
                ""
            };
            format!("Offline: cluster service stopped{alone}")
        }
        (true, Some(role)) => format!("{role}"),
        _ => "lost (no heartbeat on any interconnect)".to_owned(),
    };
    let mut rows = vec![
        vec![
            "cluster role".into(),
            format!(
                "{role} since {}",
                crate::alerts::rfc3339(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(c.since_unix)
                )
            ),
        ],
        vec!["peer".into(), peer],
    ];
    for (name, up) in &c.links {
        rows.push(vec![
            format!("interconnect {name}"),
            if *up { "up" } else { "down" }.into(),
        ]);
    }
    // Every monitor on both servers, as the manual's cluster manager shows
    // them: this node's state, and the peer's from its heartbeats.
    let (me, peer_name) = &c.servers;
    for (i, (name, state)) in c.monitors.iter().enumerate() {
        let peer_state = c
            .peer_monitors
            .get(i)
            .and_then(|(_, state)| *state)
            .map_or_else(|| "unknown".to_owned(), |s| s.to_string());
        rows.push(vec![
            format!("monitor {name}"),
            format!("{me} {state}, {peer_name} {peer_state}"),
        ]);
    }
    let short = |hash: &str| hash.chars().take(12).collect::<String>();
    rows.push(vec![
        "settings".into(),
        format!("generation {}, hash {}", c.settings.0, short(&c.settings.1)),
    ]);
    if let Some((generation, hash)) = &c.peer_settings {
        let same = (generation, hash) == (&c.settings.0, &c.settings.1);
        rows.push(vec![
            "peer settings".into(),
            format!(
                "generation {generation}, hash {}{}",
                short(hash),
                if same { "" } else { " (differ)" }
            ),
        ]);
    }
    match &c.sync {
        Some(crate::cluster::node::SyncState::Synchronized { generation }) => rows.push(vec![
            "settings sync".into(),
            format!("synchronized (generation {generation})"),
        ]),
        Some(crate::cluster::node::SyncState::NotSynchronized { reason }) => rows.push(vec![
            "settings sync".into(),
            format!("not synchronized: {reason}"),
        ]),
        None => {}
    }
    if let Some(r) = &c.replication {
        rows.extend(replication_rows(r));
    }
    rows.push(vec![
        "last change".into(),
        c.last_change.clone().unwrap_or_else(|| "none".into()),
    ]);
    rows.push(vec![
        "failovers to this node".into(),
        match c.takeovers.last_unix {
            Some(at) => format!(
                "{}, the last at {}",
                c.takeovers.count,
                crate::alerts::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(at))
            ),
            None => "none since the daemon started".into(),
        },
    ]);
    rows.push(vec![
        "monitor failovers counted".into(),
        c.failovers.to_string(),
    ]);
    if !c.refused.is_empty() {
        let refused: Vec<String> = c.refused.iter().map(|(k, v)| format!("{k} {v}")).collect();
        rows.push(vec!["heartbeats refused".into(), refused.join(", ")]);
    }
    rows
}

/// The flow replication's rows of `lb-ctl status`.
pub fn replication_rows(r: &crate::replication::status::ReplicationStatus) -> Vec<Vec<String>> {
    use crate::replication::status::StreamRole;
    let state = match (r.stream, r.connected, r.caught_up) {
        (StreamRole::Idle, ..) => "idle".to_owned(),
        (stream, false, _) => format!("{stream}, not connected"),
        (stream, true, true) => format!("{stream}, caught up"),
        (StreamRole::Receiving, true, false) => {
            "receiving, not caught up (not eligible for a failover)".to_owned()
        }
        (stream, true, false) => format!("{stream}, not caught up (bulk copy under way)"),
    };
    let mut rows = vec![vec!["flow replication".into(), state]];
    if r.stream == StreamRole::Sending {
        rows.push(vec![
            "replication lag".into(),
            format!(
                "{} messages, {} flows, {} ms",
                r.lag_messages, r.lag_flows, r.lag_ms
            ),
        ]);
    }
    rows.push(vec![
        "replicated".into(),
        format!(
            "{} messages, {} flows ({} refreshed); resends {}, gaps {}, resyncs {}",
            r.messages, r.flows, r.refreshed, r.resends, r.gaps, r.resyncs
        ),
    ]);
    rows.push(vec![
        "replication losses".into(),
        format!(
            "records lost in the ring {}, unknown service {}, unknown backend {}, garbage {}, refused connections {}",
            r.records_lost, r.unknown_service, r.unknown_backend, r.garbage, r.refused_connections
        ),
    ]);
    if r.stream == StreamRole::Receiving {
        rows.push(vec![
            "replication ignored".into(),
            format!(
                "duplicates {}, stale {}, dropped {}, on another connection {}",
                r.duplicates, r.stale, r.dropped, r.foreign
            ),
        ]);
    }
    if let Some(error) = &r.last_error {
        rows.push(vec!["replication error".into(), error.clone()]);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_shows_its_side_lag_and_losses() {
        use crate::replication::status::{ReplicationStatus, StreamRole};
        let sending = ReplicationStatus {
            stream: StreamRole::Sending,
            connected: true,
            caught_up: true,
            lag_messages: 2,
            lag_flows: 1500,
            lag_ms: 7,
            records_lost: 3,
            ..Default::default()
        };
        let rows = replication_rows(&sending);
        assert_eq!(rows[0], ["flow replication", "sending, caught up"]);
        assert_eq!(rows[1], ["replication lag", "2 messages, 1500 flows, 7 ms"]);
        assert!(
            rows[3][1].starts_with("records lost in the ring 3,"),
            "{rows:?}"
        );
        assert!(
            rows.iter().all(|r| r[0] != "replication ignored"),
            "{rows:?}"
        );
        let behind = ReplicationStatus {
            stream: StreamRole::Receiving,
            connected: true,
            duplicates: 2,
            stale: 1,
            ..Default::default()
        };
        let rows = replication_rows(&behind);
        assert_eq!(
            rows[0],
            [
                "flow replication",
                "receiving, not caught up (not eligible for a failover)"
            ]
        );
        assert!(rows.iter().all(|r| r[0] != "replication lag"), "{rows:?}");
        assert!(
            rows.iter().any(|r| r
                == &[
                    "replication ignored",
                    "duplicates 2, stale 1, dropped 0, on another connection 0"
                ]),
            "{rows:?}"
        );
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(count(999), "999");
        assert_eq!(count(1_234_567), "1.2 M");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3_400_000_000), "3.4 GB");
        assert_eq!(rate(1_200_000.0, "pps"), "1.2 Mpps");
        assert_eq!(rate(12.4, "pps"), "12 pps");
        assert_eq!(count(999_960), "1.0 M");
        assert_eq!(duration(3725), "1h 2m 5s");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(90_061), "1d 1h 1m");
    }

    #[test]
    fn neighbours_read_well() {
        use crate::api::{NextHop, Traffic};
        let mut b = BackendView {
            address: "198.18.1.99:80".parse().unwrap(),
            weight: 1,
            state: crate::balancer::BackendState::Enabled,
            health: crate::health::Health::Up,
            traffic: Traffic::default(),
            neighbour: Resolution::Unresolved,
            next_hop: Some(NextHop {
                address: "198.18.1.99".parse().unwrap(),
                interface: "int0".into(),
            }),
        };
        assert_eq!(neighbour(&b), "unresolved (198.18.1.99 on int0)");
        b.neighbour = Resolution::Resolved;
        assert_eq!(neighbour(&b), "resolved");
        b.neighbour = Resolution::NoRoute;
        b.next_hop = None;
        assert_eq!(neighbour(&b), "no route");
    }

    #[test]
    fn every_monitor_shows_on_both_servers_and_an_unknown_peer_says_so() {
        use crate::cluster::{Role, monitors::MonitorState, node::ClusterStatus};
        let status = ClusterStatus {
            role: Some(Role::Active),
            peer_alive: true,
            peer_role: Some(Role::Standby),
            monitors: vec![
                ("client-link".into(), MonitorState::Normal),
                ("stall".into(), MonitorState::Error),
            ],
            peer_monitors: vec![
                ("client-link".into(), Some(MonitorState::Offline)),
                ("stall".into(), None),
            ],
            servers: ("lb1".into(), "lb2".into()),
            ..Default::default()
        };
        let rows = cluster_rows(&status);
        let row = |name: &str| {
            rows.iter()
                .find(|r| r[0] == name)
                .map(|r| r[1].clone())
                .unwrap_or_else(|| panic!("no row {name}: {rows:?}"))
        };
        assert_eq!(row("monitor client-link"), "lb1 normal, lb2 offline");
        assert_eq!(row("monitor stall"), "lb1 error, lb2 unknown");
    }

    #[test]
    fn tables_align() {
        let rows = vec![
            vec!["SERVICE".into(), "MODE".into(), "BACKENDS".into()],
            vec!["tcp/198.18.0.100:80".into(), "nat".into(), "3".into()],
        ];
        assert_eq!(
            table(&rows),
            "SERVICE              MODE  BACKENDS\ntcp/198.18.0.100:80  nat   3\n"
        );
    }
}
