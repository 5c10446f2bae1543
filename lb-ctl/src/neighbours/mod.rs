//! Neighbour entries of the backends: the XDP program forwards with the
//! MAC addresses `bpf_fib_lookup` finds in the kernel's neighbour table, and
//! a DSR packet whose next hop has no entry yet is dropped. The daemon keeps
//! one managed entry (`NTF_MANAGED`, kernel 5.16 or later: the kernel
//! resolves it at once and keeps it resolved) for the next hop of every
//! backend and sorry server, whatever the health checks, and removes the
//! entries it made when their backends go.
//!
//! This module is the core that decides, pure: which entries must exist
//! ([`wanted`]), what to change in the table ([`plan`]) and what each
//! backend's neighbour state is, with the alerts its changes raise
//! ([`Tracker`]). `netlink` is the edge that reads and writes the kernel's
//! tables through rtnetlink; `task` runs it for the daemon.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::Duration,
};

use crate::{
    api::{AlertEvent, AlertLevel},
    config::Config,
};

pub mod netlink;
pub mod task;

/// `NDA_PROTOCOL` of the entries the daemon makes: how it tells its own
/// entries from the kernel's and other tools' (also across restarts). An
/// unassigned value of the routing protocol numbers (`/etc/iproute2/rt_protos`).
pub const PROTOCOL: u8 = 177;

/// How often the daemon reads the neighbour table (and after every applied
/// change at once).
pub const INTERVAL: Duration = Duration::from_secs(1);

/// At start, how long the daemon waits for the entries it made to resolve
/// before it attaches the program (a fresh node forwards its first packet).
pub const START_WAIT: Duration = Duration::from_millis(1500);

/// One neighbour entry: an address on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub ifindex: u32,
    pub address: IpAddr,
}

/// Where the kernel routes packets for a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// The outgoing interface.
    pub ifindex: u32,
    /// The gateway, when the backend is not on a link of this node.
    pub gateway: Option<IpAddr>,
}

impl Route {
    /// The entry a packet to `backend` needs: the gateway's, or the
    /// backend's own on a directly connected link.
    pub fn next_hop(&self, backend: IpAddr) -> Key {
        Key {
            ifindex: self.ifindex,
            address: self.gateway.unwrap_or(backend),
        }
    }
}

/// The kernel's state of an entry (`NUD_*`), as far as it matters here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelState {
    /// Has a link-layer address: REACHABLE, STALE, DELAY, PROBE.
    Valid,
    /// Set by hand (PERMANENT) or needs no resolution (NOARP): never
    /// touched by the daemon.
    Static,
    /// Resolution under way: INCOMPLETE, or NONE (just made).
    Incomplete,
    /// Resolution failed: FAILED.
    Failed,
}

/// An entry of the kernel's table, as a dump shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: Key,
    pub state: KernelState,
    /// `NTF_MANAGED`: the kernel keeps it resolved.
    pub managed: bool,
    /// Made by this daemon (its `NDA_PROTOCOL` is [`PROTOCOL`]).
    pub ours: bool,
}

/// The entries every backend address needs, from the routes towards them.
/// A backend without a route has none (it shows as such, see [`Tracker`]).
pub fn wanted(routes: &BTreeMap<IpAddr, Result<Route, String>>) -> BTreeSet<Key> {
    routes
        .iter()
        .filter_map(|(backend, route)| route.as_ref().ok().map(|r| r.next_hop(*backend)))
        .collect()
}

/// One reading of the kernel's tables (see `netlink::Netlink::sync`).
#[derive(Clone, Debug, Default)]
pub struct Reading {
    /// The route towards every address the program forwards to.
    pub routes: BTreeMap<IpAddr, Result<Route, String>>,
    /// The neighbour table after the changes.
    pub table: Vec<Entry>,
    /// What could not be read or changed.
    pub errors: Vec<String>,
}

/// Changes to the kernel's neighbour table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ops {
    /// Entries to make managed (created, or an existing dynamic entry
    /// turned managed: it keeps its address and state).
    pub manage: Vec<Key>,
    /// Entries this daemon made that no backend needs any more.
    pub remove: Vec<Key>,
}

impl Ops {
    pub fn is_empty(&self) -> bool {
        self.manage.is_empty() && self.remove.is_empty()
    }
}

/// What to change so that every wanted entry is managed and no entry of
/// ours is left without a backend. Static entries (set by hand) are left as
/// they are: they are resolved already, and making one managed would make
/// it dynamic.
pub fn plan(wanted: &BTreeSet<Key>, table: &[Entry]) -> Ops {
    let present: BTreeMap<Key, &Entry> = table.iter().map(|e| (e.key, e)).collect();
    let manage = wanted
        .iter()
        .filter(|key| match present.get(key) {
            None => true,
            Some(entry) => entry.state != KernelState::Static && !entry.managed,
        })
        .copied()
        .collect();
    let remove = table
        .iter()
        .filter(|e| e.ours && !wanted.contains(&e.key))
        .map(|e| e.key)
        .collect();
    Ops { manage, remove }
}

/// A backend's neighbour, as the API shows it. Serde: `"resolved"`,
/// `"resolving"`, `"unresolved"`, `"no_route"`.
pub use lb_common::api::Resolution;

/// One backend address's neighbour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub resolution: Resolution,
    /// The entry it needs (none without a route).
    pub next_hop: Option<Key>,
    /// Why there is no route, when there is none.
    pub reason: Option<String>,
    /// A failure was alerted and no recovery yet.
    failure_alerted: bool,
}

/// A change of a backend address's neighbour worth an alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub backend: IpAddr,
    pub from: Resolution,
    pub to: Resolution,
    pub next_hop: Option<Key>,
    pub reason: Option<String>,
}

impl Transition {
    /// True for a failure (an alert of level warning), false for a
    /// recovery.
    pub fn is_failure(&self) -> bool {
        matches!(self.to, Resolution::Unresolved | Resolution::NoRoute)
    }

    /// The alert: level, event and message. `users` says what the address
    /// is to which services ([`users_of`]); `hop` is the next hop for
    /// people (`198.18.1.1 on int0`).
    pub fn alert(&self, users: &str, hop: Option<&str>) -> (AlertLevel, AlertEvent, String) {
        if !self.is_failure() {
            return (
                AlertLevel::Info,
                AlertEvent::NeighbourResolved,
                format!(
                    "backend {} ({users}) is reachable again: next hop {} resolved",
                    self.backend,
                    hop.unwrap_or("-")
                ),
            );
        }
        let why = match (self.to, hop) {
            (Resolution::NoRoute, _) => format!(
                "no route: {}",
                self.reason.as_deref().unwrap_or("the kernel gave none")
            ),
            (_, Some(hop)) => {
                format!("its next hop {hop} does not answer (ARP / neighbour solicitation)")
            }
            (_, None) => "its next hop is unknown".to_owned(),
        };
        (
            AlertLevel::Warning,
            AlertEvent::NeighbourUnresolved,
            format!(
                "backend {} ({users}) is unreachable: {why}; DSR packets to it are dropped (drop_no_neighbour)",
                self.backend
            ),
        )
    }
}

/// What an address is to the services of `config`: `backend of
/// tcp/198.18.0.100:80, sorry server of udp/198.18.0.100:53`.
pub fn users_of(config: &Config, address: IpAddr) -> String {
    let mut users = Vec::new();
    for service in &config.services {
        if service.backends.iter().any(|b| b.address.ip() == address) {
            users.push(format!("backend of {}", service.name()));
        }
        if service.sorry.is_some_and(|s| s.ip() == address) {
            users.push(format!("sorry server of {}", service.name()));
        }
    }
    users.join(", ")
}

/// Follows each backend address's neighbour from one reading of the table
/// to the next. An entry being resolved again (INCOMPLETE, which a managed
/// entry that failed goes through on every retry) keeps the last verdict,
/// so that a failed neighbour stays unresolved until it answers.
#[derive(Clone, Debug, Default)]
pub struct Tracker {
    statuses: BTreeMap<IpAddr, Status>,
}

impl Tracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a reading: the routes towards the backend addresses (every
    /// address the daemon forwards to) and the kernel's table. Returns the
    /// failures and recoveries; addresses no longer given are forgotten
    /// without an alert.
    pub fn observe(
        &mut self,
        routes: &BTreeMap<IpAddr, Result<Route, String>>,
        table: &[Entry],
    ) -> Vec<Transition> {
        let states: BTreeMap<Key, KernelState> = table.iter().map(|e| (e.key, e.state)).collect();
        let mut transitions = Vec::new();
        let mut next = BTreeMap::new();
        for (&backend, route) in routes {
            let before = self.statuses.get(&backend);
            let from = before.map_or(Resolution::Resolving, |s| s.resolution);
            let status = match route {
                Err(reason) => Status {
                    resolution: Resolution::NoRoute,
                    next_hop: None,
                    reason: Some(reason.clone()),
                    failure_alerted: false,
                },
                Ok(route) => {
                    let key = route.next_hop(backend);
                    // A verdict about another next hop does not carry over.
                    let kept = match before {
                        Some(s) if s.next_hop == Some(key) => s.resolution,
                        _ => Resolution::Resolving,
                    };
                    let resolution = match states.get(&key) {
                        Some(KernelState::Valid | KernelState::Static) => Resolution::Resolved,
                        Some(KernelState::Failed) => Resolution::Unresolved,
                        Some(KernelState::Incomplete) | None => kept,
                    };
                    Status {
                        resolution,
                        next_hop: Some(key),
                        reason: None,
                        failure_alerted: false,
                    }
                }
            };
            let mut status = status;
            let to = status.resolution;
            let alerted = before.is_some_and(|s| s.failure_alerted);
            let failed = matches!(to, Resolution::Unresolved | Resolution::NoRoute);
            let alert = if failed {
                from != to
            } else {
                alerted && to == Resolution::Resolved
            };
            status.failure_alerted = if failed {
                true
            } else {
                alerted && to != Resolution::Resolved
            };
            if alert {
                transitions.push(Transition {
                    backend,
                    from,
                    to,
                    next_hop: status.next_hop,
                    reason: status.reason.clone(),
                });
            }
            next.insert(backend, status);
        }
        self.statuses = next;
        transitions
    }

    /// The neighbour of a backend address (resolving before the first
    /// reading).
    pub fn status(&self, backend: IpAddr) -> Option<&Status> {
        self.statuses.get(&backend)
    }

    /// Backend addresses whose neighbour is unresolved or unroutable.
    pub fn failed(&self) -> usize {
        self.statuses
            .values()
            .filter(|s| matches!(s.resolution, Resolution::Unresolved | Resolution::NoRoute))
            .count()
    }

    /// True when every next hop is resolved or has failed (nothing is still
    /// being resolved for the first time).
    pub fn settled(&self) -> bool {
        self.statuses
            .values()
            .all(|s| s.resolution != Resolution::Resolving)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigFile as _;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn key(ifindex: u32, address: &str) -> Key {
        Key {
            ifindex,
            address: ip(address),
        }
    }

    fn entry(k: Key, state: KernelState, managed: bool, ours: bool) -> Entry {
        Entry {
            key: k,
            state,
            managed,
            ours,
        }
    }

    fn routes(list: &[(&str, Result<Route, String>)]) -> BTreeMap<IpAddr, Result<Route, String>> {
        list.iter().map(|(a, r)| (ip(a), r.clone())).collect()
    }

    fn direct(ifindex: u32) -> Result<Route, String> {
        Ok(Route {
            ifindex,
            gateway: None,
        })
    }

    fn via(ifindex: u32, gateway: &str) -> Result<Route, String> {
        Ok(Route {
            ifindex,
            gateway: Some(ip(gateway)),
        })
    }

    #[test]
    fn the_next_hop_is_the_backend_on_a_link_and_the_gateway_behind_one() {
        let wanted = wanted(&routes(&[
            ("198.18.1.11", direct(3)),
            ("2001:db8:1::11", direct(3)),
            // Two backends behind one gateway need one entry.
            ("203.0.113.5", via(4, "198.18.2.1")),
            ("203.0.113.6", via(4, "198.18.2.1")),
            ("2001:db8:7::5", via(4, "fe80::1")),
            ("192.0.2.9", Err("no route".into())),
        ]));
        assert_eq!(
            wanted,
            BTreeSet::from([
                key(3, "198.18.1.11"),
                key(3, "2001:db8:1::11"),
                key(4, "198.18.2.1"),
                key(4, "fe80::1"),
            ])
        );
    }

    #[test]
    fn plan_manages_what_is_missing_and_removes_only_our_leftovers() {
        let wanted = BTreeSet::from([
            key(3, "198.18.1.11"),
            key(3, "198.18.1.12"),
            key(3, "198.18.1.13"),
            key(3, "198.18.1.14"),
        ]);
        let table = [
            // Already managed: nothing to do.
            entry(key(3, "198.18.1.11"), KernelState::Valid, true, true),
            // Learned by the kernel from traffic: made managed.
            entry(key(3, "198.18.1.12"), KernelState::Valid, false, false),
            // Set by hand: left alone.
            entry(key(3, "198.18.1.13"), KernelState::Static, false, false),
            // 198.18.1.14 is missing: made.
            // Ours, no backend needs it: removed.
            entry(key(3, "198.18.1.20"), KernelState::Failed, true, true),
            // Not ours: never removed.
            entry(key(3, "198.18.1.21"), KernelState::Valid, false, false),
            entry(key(3, "198.18.1.22"), KernelState::Valid, true, false),
        ];
        assert_eq!(
            plan(&wanted, &table),
            Ops {
                manage: vec![key(3, "198.18.1.12"), key(3, "198.18.1.14")],
                remove: vec![key(3, "198.18.1.20")],
            }
        );
        // Applied, the next plan is empty.
        let applied = [
            entry(key(3, "198.18.1.11"), KernelState::Valid, true, true),
            entry(key(3, "198.18.1.12"), KernelState::Valid, true, true),
            entry(key(3, "198.18.1.13"), KernelState::Static, false, false),
            entry(key(3, "198.18.1.14"), KernelState::Incomplete, true, true),
        ];
        assert!(plan(&wanted, &applied).is_empty());
        // Every backend gone: our entries go, the others stay.
        assert_eq!(
            plan(&BTreeSet::new(), &applied),
            Ops {
                manage: vec![],
                remove: vec![
                    key(3, "198.18.1.11"),
                    key(3, "198.18.1.12"),
                    key(3, "198.18.1.14")
                ],
            }
        );
    }

    #[test]
    fn a_failed_neighbour_raises_one_alert_and_one_when_it_answers_again() {
        let mut tracker = Tracker::new();
        let r = routes(&[("198.18.1.11", direct(3)), ("198.18.1.99", direct(3))]);
        let good = key(3, "198.18.1.11");
        let bad = key(3, "198.18.1.99");
        let read = |tracker: &mut Tracker, good_state, bad_state| {
            tracker.observe(
                &r,
                &[
                    entry(good, good_state, true, true),
                    entry(bad, bad_state, true, true),
                ],
            )
        };
        // Just made: resolving, no alert.
        assert!(
            read(
                &mut tracker,
                KernelState::Incomplete,
                KernelState::Incomplete
            )
            .is_empty()
        );
        assert_eq!(
            tracker.status(ip("198.18.1.99")).unwrap().resolution,
            Resolution::Resolving
        );
        assert!(!tracker.settled());
        // One answers, the other fails: one alert.
        let t = read(&mut tracker, KernelState::Valid, KernelState::Failed);
        assert_eq!(
            t,
            vec![Transition {
                backend: ip("198.18.1.99"),
                from: Resolution::Resolving,
                to: Resolution::Unresolved,
                next_hop: Some(bad),
                reason: None,
            }]
        );
        assert!(t[0].is_failure());
        assert!(tracker.settled());
        assert_eq!(tracker.failed(), 1);
        // The kernel retries (INCOMPLETE) and fails again: still
        // unresolved, no new alert.
        for state in [
            KernelState::Incomplete,
            KernelState::Failed,
            KernelState::Incomplete,
        ] {
            assert!(read(&mut tracker, KernelState::Valid, state).is_empty());
            assert_eq!(
                tracker.status(ip("198.18.1.99")).unwrap().resolution,
                Resolution::Unresolved
            );
        }
        // It answers: a recovery.
        let t = read(&mut tracker, KernelState::Valid, KernelState::Valid);
        assert_eq!(t.len(), 1);
        assert_eq!(
            (t[0].from, t[0].to, t[0].is_failure()),
            (Resolution::Unresolved, Resolution::Resolved, false)
        );
        assert_eq!(tracker.failed(), 0);
        // Stale entries are still resolved (the kernel re-checks them).
        assert!(read(&mut tracker, KernelState::Valid, KernelState::Valid).is_empty());
    }

    #[test]
    fn no_route_is_a_failure_and_a_removed_backend_is_forgotten() {
        let mut tracker = Tracker::new();
        let t = tracker.observe(
            &routes(&[("192.0.2.9", Err("Network is unreachable".into()))]),
            &[],
        );
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].to, Resolution::NoRoute);
        assert_eq!(t[0].reason.as_deref(), Some("Network is unreachable"));
        assert!(tracker.settled());
        // Gone from the configuration: forgotten, no alert.
        assert!(tracker.observe(&BTreeMap::new(), &[]).is_empty());
        assert!(tracker.status(ip("192.0.2.9")).is_none());
    }

    #[test]
    fn a_verdict_does_not_carry_over_to_another_next_hop() {
        let mut tracker = Tracker::new();
        let first = key(3, "198.18.2.1");
        let t = tracker.observe(
            &routes(&[("203.0.113.5", via(3, "198.18.2.1"))]),
            &[entry(first, KernelState::Failed, true, true)],
        );
        assert_eq!(t.len(), 1);
        // The route moves to another gateway, whose entry is being made.
        let moved = routes(&[("203.0.113.5", via(3, "198.18.2.2"))]);
        let t = tracker.observe(&moved, &[]);
        assert!(t.is_empty());
        let status = tracker.status(ip("203.0.113.5")).unwrap();
        assert_eq!(status.resolution, Resolution::Resolving);
        assert_eq!(status.next_hop, Some(key(3, "198.18.2.2")));
        // It resolves: the failure alerted before is over.
        let t = tracker.observe(
            &moved,
            &[entry(key(3, "198.18.2.2"), KernelState::Valid, true, true)],
        );
        assert_eq!(t.len(), 1);
        assert_eq!(
            (t[0].from, t[0].to),
            (Resolution::Resolving, Resolution::Resolved)
        );
    }

    #[test]
    fn alerts_say_which_backend_of_which_service_and_why() {
        let config = Config::parse(
            "[node]\nname = \"lb1\"\ninterfaces = [\"ext0\"]\n\n[[services]]\nvip = \"198.18.0.100\"\nport = 80\nprotocol = \"tcp\"\nsorry = \"198.18.1.99:80\"\n\n[[services.backends]]\naddress = \"198.18.1.11:80\"\n\n[[services]]\nvip = \"198.18.0.100\"\nport = 443\nprotocol = \"tcp\"\n\n[[services.backends]]\naddress = \"198.18.1.99:443\"\n",
        )
        .unwrap();
        let users = users_of(&config, ip("198.18.1.99"));
        assert_eq!(
            users,
            "sorry server of tcp/198.18.0.100:80, backend of tcp/198.18.0.100:443"
        );
        let mut t = Transition {
            backend: ip("198.18.1.99"),
            from: Resolution::Resolving,
            to: Resolution::NoRoute,
            next_hop: None,
            reason: Some("Network is unreachable".into()),
        };
        assert_eq!(
            t.alert(&users, None),
            (
                AlertLevel::Warning,
                AlertEvent::NeighbourUnresolved,
                "backend 198.18.1.99 (sorry server of tcp/198.18.0.100:80, backend of tcp/198.18.0.100:443) is unreachable: no route: Network is unreachable; DSR packets to it are dropped (drop_no_neighbour)".to_owned()
            )
        );
        (t.from, t.to, t.reason) = (Resolution::NoRoute, Resolution::Resolved, None);
        assert_eq!(
            t.alert("backend of tcp/198.18.0.100:443", Some("198.18.1.99 on int0")),
            (
                AlertLevel::Info,
                AlertEvent::NeighbourResolved,
                "backend 198.18.1.99 (backend of tcp/198.18.0.100:443) is reachable again: next hop 198.18.1.99 on int0 resolved".to_owned()
            )
        );
    }

    #[test]
    fn static_entries_count_as_resolved() {
        let mut tracker = Tracker::new();
        tracker.observe(
            &routes(&[("198.18.1.11", direct(3))]),
            &[entry(
                key(3, "198.18.1.11"),
                KernelState::Static,
                false,
                false,
            )],
        );
        assert_eq!(
            tracker.status(ip("198.18.1.11")).unwrap().resolution,
            Resolution::Resolved
        );
    }
}
