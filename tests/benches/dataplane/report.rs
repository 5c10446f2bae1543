//! The report: every figure measured, by JSON section and key, written as
//! `target/bench/dataplane.json` (rounded per section; `null` when not
//! measured) and printed as an aligned table, then the targets (each
//! checked from the figures: met or not, with the ratio; none fails the
//! run), then the details the phases recorded.
use std::fs;

use anyhow::Result;
use serde_json::json;

use super::pps;

/// Everything measured, by JSON section and key; `None` when not measured.
#[derive(Default)]
pub(super) struct Report {
    pub(super) ns_per_packet: Vec<(&'static str, Option<f64>)>,
    pub(super) rig_ns_per_packet: Vec<(&'static str, Option<f64>)>,
    pub(super) rig_requests_per_s: Vec<(&'static str, Option<f64>)>,
    pub(super) rig_tcp_gbps: Vec<(&'static str, Option<f64>)>,
    /// Bulk TCP through the VIP by the links' MTU (the jumbo phase).
    pub(super) rig_tcp_gbps_by_mtu: Vec<(&'static str, Option<f64>)>,
    /// Small packets (`pps.rs`), by kind, flows and path.
    pub(super) small_pps: Vec<pps::Figure>,
    /// Lines printed under the table: medians, fixed overheads, CPU load.
    details: Vec<String>,
    pub(super) failures: Vec<String>,
}

const BY_MTU_KEYS: [&str; 4] = [
    "lb_1500",
    "nftables_dnat_1500",
    "lb_9000",
    "nftables_dnat_9000",
];

/// `baseline_lookup`: `lb_baseline_lookup`, the yardstick with the one
/// connection-table lookup (see lb-ebpf/src/baseline.rs).
const RIG_NS_KEYS: [&str; 3] = ["baseline", "baseline_lookup", "lb"];

const TCP_KEYS: [&str; 4] = ["direct", "lb", "nftables_dnat", "baseline"];

pub(super) const NS_KEYS: [&str; 6] = [
    "baseline_v4",
    "established_v4",
    "new_flow_v4",
    "baseline_v6",
    "established_v6",
    "new_flow_v6",
];

impl Report {
    pub(super) fn failure(&mut self, what: String) {
        eprintln!("[bench] FAILED: {what}");
        self.failures.push(what);
    }

    pub(super) fn detail(&mut self, line: String) {
        println!("[bench]   {line}");
        self.details.push(line);
    }

    fn get(section: &[(&'static str, Option<f64>)], key: &str) -> Option<f64> {
        section
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| *v)
    }

    fn json(&self) -> serde_json::Value {
        fn section(
            keys: &[&str],
            values: &[(&'static str, Option<f64>)],
            digits: i32,
        ) -> serde_json::Value {
            let scale = 10f64.powi(digits);
            let map: serde_json::Map<String, serde_json::Value> = keys
                .iter()
                .map(|&k| {
                    let v = Report::get(values, k).map(|v| (v * scale).round() / scale);
                    (k.to_owned(), json!(v))
                })
                .collect();
            serde_json::Value::Object(map)
        }
        json!({
            "ns_per_packet": section(&NS_KEYS, &self.ns_per_packet, 1),
            "rig_ns_per_packet": section(&RIG_NS_KEYS, &self.rig_ns_per_packet, 1),
            "rig_requests_per_s": section(&["direct", "lb", "nftables_dnat"], &self.rig_requests_per_s, 0),
            "rig_tcp_gbps": section(&TCP_KEYS, &self.rig_tcp_gbps, 2),
            "rig_tcp_gbps_by_mtu": section(&BY_MTU_KEYS, &self.rig_tcp_gbps_by_mtu, 2),
            "rig_small_packets_pps": self.small_pps_json(pps::KINDS[0]),
            "rig_small_packets_pps_tcp_ack": self.small_pps_json(pps::KINDS[1]),
            "rig_small_packets_lb_ns": self.small_ns_json(),
            "rig_syn_flood_pps": self.syn_flood_json(false),
            "rig_syn_flood_lb_ns": self.syn_flood_json(true),
        })
    }

    /// The SYN flood's figures by path: packets per second delivered, or
    /// (`ns`) the LB thread's CPU time per packet.
    fn syn_flood_json(&self, ns: bool) -> serde_json::Value {
        let paths = if ns {
            &pps::PATHS[1..]
        } else {
            &pps::PATHS[..]
        };
        let map: serde_json::Map<String, serde_json::Value> = paths
            .iter()
            .map(|&path| {
                let figure = self.small_pps(lb_tests::pps::Kind::TcpSyn, pps::NEW_FLOWS, path);
                let v = figure.map(|f| {
                    if ns {
                        (f.lb_ns_per_packet * 10.0).round() / 10.0
                    } else {
                        f.pps.round()
                    }
                });
                (path.to_owned(), json!(v))
            })
            .collect();
        serde_json::Value::Object(map)
    }

    /// A small-packet figure (frames per second), if measured.
    fn small_pps(
        &self,
        kind: lb_tests::pps::Kind,
        flows: &str,
        path: &str,
    ) -> Option<&pps::Figure> {
        self.small_pps
            .iter()
            .find(|f| f.kind == kind && f.flows == flows && f.path == path)
    }

    fn small_pps_json(&self, kind: lb_tests::pps::Kind) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for flows in pps::FLOWS {
            let paths: serde_json::Map<String, serde_json::Value> = pps::PATHS
                .iter()
                .map(|&path| {
                    let v = self.small_pps(kind, flows, path).map(|f| f.pps.round());
                    (path.to_owned(), json!(v))
                })
                .collect();
            out.insert(flows.to_owned(), serde_json::Value::Object(paths));
        }
        serde_json::Value::Object(out)
    }

    /// The LB receive thread's CPU time per packet, by kind, flows, path.
    fn small_ns_json(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for kind in pps::KINDS {
            let mut flows_map = serde_json::Map::new();
            for flows in pps::FLOWS {
                let paths: serde_json::Map<String, serde_json::Value> = pps::PATHS[1..]
                    .iter()
                    .map(|&path| {
                        let v = self
                            .small_pps(kind, flows, path)
                            .map(|f| (f.lb_ns_per_packet * 10.0).round() / 10.0);
                        (path.to_owned(), json!(v))
                    })
                    .collect();
                flows_map.insert(flows.to_owned(), serde_json::Value::Object(paths));
            }
            out.insert(kind.name().to_owned(), serde_json::Value::Object(flows_map));
        }
        serde_json::Value::Object(out)
    }

    pub(super) fn write_json(&self, path: &std::path::Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(path, serde_json::to_string_pretty(&self.json())? + "\n")?;
        Ok(())
    }

    /// The aligned table, then the targets, then the details.
    pub(super) fn table(&self) -> String {
        let mut rows: Vec<[String; 3]> = Vec::new();
        let show = |v: Option<f64>, digits: usize| match v {
            Some(v) => format!("{v:.digits$}"),
            None => "not measured".into(),
        };
        for &key in &NS_KEYS {
            rows.push([
                format!("ns_per_packet.{key}"),
                show(Self::get(&self.ns_per_packet, key), 1),
                "ns".into(),
            ]);
        }
        for key in RIG_NS_KEYS {
            rows.push([
                format!("rig_ns_per_packet.{key}"),
                show(Self::get(&self.rig_ns_per_packet, key), 1),
                "ns".into(),
            ]);
        }
        for key in ["direct", "lb", "nftables_dnat"] {
            rows.push([
                format!("rig_requests_per_s.{key}"),
                show(Self::get(&self.rig_requests_per_s, key), 0),
                "req/s".into(),
            ]);
        }
        for key in TCP_KEYS {
            rows.push([
                format!("rig_tcp_gbps.{key}"),
                show(Self::get(&self.rig_tcp_gbps, key), 2),
                "Gbit/s".into(),
            ]);
        }
        for key in BY_MTU_KEYS {
            rows.push([
                format!("rig_tcp_gbps_by_mtu.{key}"),
                show(Self::get(&self.rig_tcp_gbps_by_mtu, key), 2),
                "Gbit/s".into(),
            ]);
        }
        for (kind, section) in [
            (pps::KINDS[0], "rig_small_packets_pps"),
            (pps::KINDS[1], "rig_small_packets_pps_tcp_ack"),
        ] {
            for flows in pps::FLOWS {
                for path in pps::PATHS {
                    let figure = self.small_pps(kind, flows, path);
                    rows.push([
                        format!("{section}.{flows}.{path}"),
                        show(figure.map(|f| f.pps), 0),
                        match figure {
                            Some(f) if path != "generator" => format!(
                                "pkt/s (generator made {:.0}/s; LB thread {:.0} ns/pkt)",
                                f.generator_pps, f.lb_ns_per_packet
                            ),
                            _ => "pkt/s".into(),
                        },
                    ]);
                }
            }
        }
        for path in pps::PATHS {
            let figure = self.small_pps(lb_tests::pps::Kind::TcpSyn, pps::NEW_FLOWS, path);
            rows.push([
                format!("rig_syn_flood_pps.{path}"),
                show(figure.map(|f| f.pps), 0),
                match figure {
                    Some(f) if path != "generator" => format!(
                        "new flows/s (generator made {:.0}/s; LB thread {:.0} ns/pkt)",
                        f.generator_pps, f.lb_ns_per_packet
                    ),
                    _ => "new flows/s".into(),
                },
            ]);
        }
        lb_tests::table::figures(&rows, &self.targets(), &self.details)
    }

    fn targets(&self) -> Vec<String> {
        let mut lines = Vec::new();
        // Test-run figures (means) against the baseline of their family.
        for (path, limit) in [("established", 2.0), ("new_flow", 3.0)] {
            for fam in ["v4", "v6"] {
                let figure = Self::get(&self.ns_per_packet, &format!("{path}_{fam}"));
                let base = Self::get(&self.ns_per_packet, &format!("baseline_{fam}"));
                let target = format!("{path}_{fam} <= {limit} x baseline_{fam}");
                lines.push(match (figure, base) {
                    (Some(f), Some(b)) => {
                        format!("{target}: {} (ratio {:.2})", met(f <= limit * b), f / b)
                    }
                    _ => format!("{target}: not measured"),
                });
            }
        }
        let rig_ns = |key| Self::get(&self.rig_ns_per_packet, key);
        lines.push(match (rig_ns("lb"), rig_ns("baseline"), rig_ns("baseline_lookup")) {
            (Some(l), Some(b), lookup) => format!(
                "rig_ns_per_packet: lb <= 1.5 x baseline: {} (ratio of the medians {:.2}){}",
                met(l <= 1.5 * b),
                l / b,
                lookup.map_or(String::new(), |k| format!(
                    "; lb / baseline_lookup {:.2}, baseline_lookup / baseline {:.2} (no target: the one lookup's share)",
                    l / k,
                    k / b
                ))
            ),
            _ => "rig_ns_per_packet: lb <= 1.5 x baseline: not measured".into(),
        });
        for (section, name) in [
            (&self.rig_requests_per_s, "rig_requests_per_s"),
            (&self.rig_tcp_gbps, "rig_tcp_gbps"),
        ] {
            let lb = Self::get(section, "lb");
            let nft = Self::get(section, "nftables_dnat");
            lines.push(match (lb, nft) {
                (Some(l), Some(n)) => format!(
                    "{name}: lb >= nftables_dnat: {} (ratio {:.3})",
                    met(l >= n),
                    l / n
                ),
                _ => format!("{name}: lb >= nftables_dnat: not measured"),
            });
        }
        for kind in pps::KINDS {
            let section = match kind {
                lb_tests::pps::Kind::Udp => "rig_small_packets_pps",
                _ => "rig_small_packets_pps_tcp_ack",
            };
            for flows in pps::FLOWS {
                let get = |path| self.small_pps(kind, flows, path).map(|f| f.pps);
                let lb = get("lb");
                // What the LB's CPU could forward: 1 s over its CPU time
                // per packet.
                let capacity = |path| {
                    self.small_pps(kind, flows, path)
                        .map(|f| 1e9 / f.lb_ns_per_packet)
                };
                for (other, factor) in [("nftables_dnat", 3.0), ("baseline", 0.8)] {
                    let name = format!("{section}.{flows}: lb >= {factor} x {other}");
                    lines.push(match (lb, get(other)) {
                        (Some(l), Some(o)) => {
                            format!("{name}: {} (ratio {:.2})", met(l >= factor * o), l / o)
                        }
                        _ => format!("{name}: not measured"),
                    });
                    let name = format!(
                        "  the same by packets per second of the LB thread's CPU ({flows}, {})",
                        kind.name()
                    );
                    lines.push(match (capacity("lb"), capacity(other)) {
                        (Some(l), Some(o)) => format!(
                            "{name}: {} (ratio {:.2}; {:.0} vs {:.0} pkt/s)",
                            met(l >= factor * o),
                            l / o,
                            l,
                            o
                        ),
                        _ => format!("{name}: not measured"),
                    });
                }
                if let (Some(l), Some(k)) = (capacity("lb"), capacity("baseline_lookup")) {
                    lines.push(format!(
                        "  (no target) by the LB thread's CPU ({flows}, {}): lb / baseline_lookup {:.2}",
                        kind.name(),
                        l / k
                    ));
                }
            }
        }
        // No target in the issue: the figures side by side.
        let syn = |path| self.small_pps(lb_tests::pps::Kind::TcpSyn, pps::NEW_FLOWS, path);
        lines.push(match (syn("lb"), syn("nftables_dnat"), syn("baseline")) {
            (Some(l), Some(n), Some(b)) => format!(
                "rig_syn_flood_pps (no target): lb / nftables_dnat {:.2} delivered, {:.2} by the LB thread's CPU; lb / baseline {:.2} delivered, {:.2} by CPU",
                l.pps / n.pps,
                n.lb_ns_per_packet / l.lb_ns_per_packet,
                l.pps / b.pps,
                b.lb_ns_per_packet / l.lb_ns_per_packet
            ),
            _ => "rig_syn_flood_pps (no target): not measured".into(),
        });
        lines
    }
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}
