//! Which `[cluster]` keys a running node can change, pure: an operator's
//! new configuration (`PUT /v1/config`) either changes only keys the
//! cluster's loop takes live, and they take effect, or it is refused with
//! the keys that need a restart and what to do. Never a file that says one
//! thing while the loop runs another.
//!
//! Live: the monitors (added, removed, any of their knobs), `auto_failback`,
//! `survivor`, `max_failovers`, `failover_window_s`, `final_action` and
//! `np_targets` (what membership and the monitors read on every pass; none
//! of them needs a socket, a key or an address the loop holds).
//!
//! Not live: `id`, `key_file` and `tls_dir` (the heartbeats' keys and the
//! TLS material are loaded at start), `servers` and `interconnects` (the
//! sockets and whom they talk to), `sync_port` and `replication_port`
//! (listeners), `floating_ips` (the fence's address list in the data plane
//! and the group the loop converges), `heartbeat_interval_ms` and
//! `heartbeat_lost_after` (the peer counts its dead time in this node's
//! heartbeats, and the data plane's lease is derived from them: both nodes
//! must change them together), and adding or removing the section.
use super::ClusterConfig;

/// A `[cluster]` key and whether a running node can change it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    /// The key's name in the section (`heartbeat_interval_ms`).
    pub name: &'static str,
    /// Why it cannot change while running (None: it can).
    pub restart: Option<&'static str>,
}

const KEYS_ONLY_AT_START: &str = "the keys and TLS material are loaded at start";
const SOCKETS: &str = "the heartbeat, sync and replication sockets are opened at start";
const DEAD_TIME: &str = "the peer counts its dead time in this node's heartbeats, and the data plane's lease is derived from it: both nodes must change it together";
const GROUP: &str = "the group's addresses are handed to the data plane's fence at start";

/// Every key of the section, in the file's order, with whether it is live.
fn keys(old: &ClusterConfig, new: &ClusterConfig) -> [(Key, bool); 17] {
    let live = |name| Key {
        name,
        restart: None,
    };
    let restart = |name, why| Key {
        name,
        restart: Some(why),
    };
    [
        (restart("id", KEYS_ONLY_AT_START), old.id != new.id),
        (
            restart("key_file", KEYS_ONLY_AT_START),
            old.key_file != new.key_file,
        ),
        (
            restart("tls_dir", KEYS_ONLY_AT_START),
            old.tls_dir != new.tls_dir,
        ),
        (
            restart("sync_port", SOCKETS),
            old.sync_port != new.sync_port,
        ),
        (
            restart("replication_port", SOCKETS),
            old.replication_port != new.replication_port,
        ),
        (
            restart("heartbeat_interval_ms", DEAD_TIME),
            old.heartbeat_interval_ms != new.heartbeat_interval_ms,
        ),
        (
            restart("heartbeat_lost_after", DEAD_TIME),
            old.heartbeat_lost_after != new.heartbeat_lost_after,
        ),
        (
            live("auto_failback"),
            old.auto_failback != new.auto_failback,
        ),
        (live("survivor"), old.survivor != new.survivor),
        (
            live("max_failovers"),
            old.max_failovers != new.max_failovers,
        ),
        (
            live("failover_window_s"),
            old.failover_window_s != new.failover_window_s,
        ),
        (live("final_action"), old.final_action != new.final_action),
        (live("np_targets"), old.np_targets != new.np_targets),
        (restart("servers", SOCKETS), old.servers != new.servers),
        (
            restart("interconnects", SOCKETS),
            old.interconnects != new.interconnects,
        ),
        (
            restart("floating_ips", GROUP),
            old.floating_ips != new.floating_ips,
        ),
        (live("monitors"), old.monitors != new.monitors),
    ]
}

/// The `[cluster]` keys that differ between `old` and `new`, in the
/// file's order.
pub fn changed(old: &ClusterConfig, new: &ClusterConfig) -> Vec<Key> {
    keys(old, new)
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(key, _)| key)
        .collect()
}

/// What a running node does with a new `[cluster]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing in it changed.
    Unchanged,
    /// Only keys the loop takes live changed (their names, `cluster.`
    /// first): hand the new section to the loop.
    Live(Vec<String>),
    /// A key that cannot change while running changed: refuse the whole
    /// configuration, with this message; `key` is the first such key
    /// (`cluster.heartbeat_interval_ms`), or `cluster` when the section
    /// is added or removed.
    Refused { key: String, message: String },
}

/// The decision for a running node whose configuration holds `old` and
/// is asked to hold `new`.
pub fn judge(old: Option<&ClusterConfig>, new: Option<&ClusterConfig>) -> Verdict {
    let restart_advice = "edit it in both nodes' files and restart `lb-ctl run` on each, the standby first (a restarted node starts standby)";
    match (old, new) {
        (None, None) => Verdict::Unchanged,
        (None, Some(_)) => Verdict::Refused {
            key: "cluster".into(),
            message: format!(
                "cluster: the [cluster] section cannot be added while the daemon runs (it starts the cluster's loop): {restart_advice}; nothing was changed"
            ),
        },
        (Some(_), None) => Verdict::Refused {
            key: "cluster".into(),
            message: format!(
                "cluster: the [cluster] section cannot be removed while the daemon runs (the cluster's loop holds the group): {restart_advice}; nothing was changed"
            ),
        },
        (Some(old), Some(new)) => {
            let changed = changed(old, new);
            let restart: Vec<String> = changed
                .iter()
                .filter_map(|k| k.restart.map(|why| format!("cluster.{} ({why})", k.name)))
                .collect();
            if let Some(first) = changed.iter().find(|k| k.restart.is_some()) {
                return Verdict::Refused {
                    key: format!("cluster.{}", first.name),
                    message: format!(
                        "cannot change while the daemon runs: {}; {restart_advice}; nothing was changed",
                        restart.join("; ")
                    ),
                };
            }
            if changed.is_empty() {
                Verdict::Unchanged
            } else {
                Verdict::Live(
                    changed
                        .iter()
                        .map(|k| format!("cluster.{}", k.name))
                        .collect(),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::config::{FinalAction, Monitor};

    fn cluster() -> ClusterConfig {
        toml::from_str(
            r#"
id = "00112233445566778899aabbccddeeff"
[[servers]]
name = "lb1"
[[servers]]
name = "lb2"
[[interconnects]]
name = "hb0"
addresses = ["198.18.8.1", "198.18.8.2"]
[[floating_ips]]
address = "198.18.0.100/24"
interface = "ext0"
[[monitors]]
name = "uplink"
kind = "link"
interface = "ext0"
"#,
        )
        .unwrap()
    }

    #[test]
    fn live_keys_are_named_and_taken() {
        let old = cluster();
        assert_eq!(judge(Some(&old), Some(&old)), Verdict::Unchanged);
        assert_eq!(judge(None, None), Verdict::Unchanged);
        let mut new = old.clone();
        new.auto_failback = true;
        new.max_failovers = 5;
        new.failover_window_s = 60;
        new.final_action = FinalAction::Stop;
        new.np_targets = vec!["198.18.0.254".parse().unwrap()];
        new.survivor = Some("lb2".into());
        new.monitors[0].retries = 3;
        new.monitors.push(Monitor {
            name: "gw".into(),
            ..new.monitors[0].clone()
        });
        assert_eq!(
            judge(Some(&old), Some(&new)),
            Verdict::Live(
                [
                    "cluster.auto_failback",
                    "cluster.survivor",
                    "cluster.max_failovers",
                    "cluster.failover_window_s",
                    "cluster.final_action",
                    "cluster.np_targets",
                    "cluster.monitors",
                ]
                .map(String::from)
                .to_vec()
            )
        );
    }

    #[test]
    fn a_key_that_needs_a_restart_refuses_the_whole_change_with_what_to_do() {
        let old = cluster();
        let mut new = old.clone();
        new.heartbeat_interval_ms = 100;
        new.auto_failback = true;
        new.floating_ips[0].address = "198.18.0.101/24".into();
        assert_eq!(
            judge(Some(&old), Some(&new)),
            Verdict::Refused {
                key: "cluster.heartbeat_interval_ms".into(),
                message: "cannot change while the daemon runs: cluster.heartbeat_interval_ms (the peer counts its dead time in this node's heartbeats, and the data plane's lease is derived from it: both nodes must change it together); \
                 cluster.floating_ips (the group's addresses are handed to the data plane's fence at start); \
                 edit it in both nodes' files and restart `lb-ctl run` on each, the standby first (a restarted node starts standby); nothing was changed"
                    .into()
            }
        );
        for (edit, key) in [
            (
                (|c: &mut ClusterConfig| c.id = "ff".repeat(16)) as fn(&mut ClusterConfig),
                "cluster.id",
            ),
            (
                |c| c.key_file = "/etc/other.keys".into(),
                "cluster.key_file",
            ),
            (|c| c.tls_dir = "/etc/other".into(), "cluster.tls_dir"),
            (|c| c.sync_port = 1, "cluster.sync_port"),
            (|c| c.replication_port = 1, "cluster.replication_port"),
            (
                |c| c.heartbeat_lost_after = 9,
                "cluster.heartbeat_lost_after",
            ),
            (|c| c.servers[1].name = "lb3".into(), "cluster.servers"),
            (|c| c.interconnects[0].port = 1, "cluster.interconnects"),
        ] {
            let mut new = old.clone();
            edit(&mut new);
            let Verdict::Refused {
                key: first,
                message,
            } = judge(Some(&old), Some(&new))
            else {
                panic!("{key} taken live");
            };
            assert_eq!(first, key);
            assert!(
                message.starts_with(&format!("cannot change while the daemon runs: {key} (")),
                "{message}"
            );
        }
        let Verdict::Refused {
            message: added,
            key,
        } = judge(None, Some(&old))
        else {
            panic!("a [cluster] added live");
        };
        assert!(added.contains("cannot be added"), "{added}");
        assert_eq!(key, "cluster");
        let Verdict::Refused {
            message: removed,
            key,
        } = judge(Some(&old), None)
        else {
            panic!("a [cluster] removed live");
        };
        assert!(removed.contains("cannot be removed"), "{removed}");
        assert_eq!(key, "cluster");
    }
}
