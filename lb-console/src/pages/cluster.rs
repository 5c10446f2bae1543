//! The cluster: the two servers and their roles, where the group runs, the
//! interconnects, the monitors on each server, the settings sync and the
//! flow replication, from the daemon's status (`ClusterStatus`), and the
//! operations (failover, failback, stop, start: each through a
//! confirmation page; sync settings). What the daemon or the peer does not
//! say is unknown, never a guess: a lost peer's role and monitors are
//! unknown.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lb_common::api::{ClusterOperation, ClusterStatus, MonitorState, Role, Status, SyncState};
use maud::{Markup, html};

use super::{Nav, app, unknown};
use crate::system::utc;

/// What happened to the last operation asked on this page.
pub enum Outcome {
    Done(String),
    Refused(String),
}

fn when(unix: u64) -> String {
    utc(UNIX_EPOCH + Duration::from_secs(unix))
}

fn role(role: Option<Role>) -> Markup {
    match role {
        Some(Role::Active) => html! { span.badge.ok { "active" } },
        Some(Role::Standby) => html! { span.badge { "standby" } },
        None => html! { span.badge.warn { "no role" } },
    }
}

fn monitor(state: Option<MonitorState>) -> Markup {
    match state {
        Some(MonitorState::Normal) => html! { span.badge.ok { "Normal" } },
        Some(MonitorState::Error) => html! { span.badge.bad { "Error" } },
        Some(MonitorState::Offline) => html! { span.badge { "Offline" } },
        None => unknown(),
    }
}

fn yes_no(value: bool, yes: &str, no: &str) -> Markup {
    if value {
        html! { span.badge.ok { (yes) } }
    } else {
        html! { span.badge.bad { (no) } }
    }
}

/// The operations offered, with what each does.
pub const OPERATIONS: [(ClusterOperation, &str); 4] = [
    (
        ClusterOperation::Failover,
        "Move the group (the floating IPs and the service traffic) to the other server.",
    ),
    (
        ClusterOperation::Failback,
        "Move the group back to the preferred server.",
    ),
    (
        ClusterOperation::Stop,
        "Stop this server's cluster service (Offline): an active hands the group to the other server first; refused when it cannot take it.",
    ),
    (
        ClusterOperation::Start,
        "Start this server's cluster service again (it joins as the standby).",
    ),
];

fn title(op: ClusterOperation) -> &'static str {
    match op {
        ClusterOperation::Failover => "Fail over",
        ClusterOperation::Failback => "Fail back",
        ClusterOperation::Stop => "Stop the cluster service",
        ClusterOperation::ForceStop => "Force stop",
        ClusterOperation::Start => "Start the cluster service",
    }
}

/// The operation's button.
fn button(op: ClusterOperation) -> &'static str {
    match op {
        ClusterOperation::Failover => "Fail over",
        ClusterOperation::Failback => "Fail back",
        ClusterOperation::Stop => "Stop",
        ClusterOperation::ForceStop => "Force stop",
        ClusterOperation::Start => "Start",
    }
}

fn servers(c: &ClusterStatus) -> Markup {
    let (me, peer) = &c.servers;
    html! {
        section.card aria-labelledby="servers" {
            h2 #servers { "Servers" }
            dl.facts {
                dt { (me) " (this server)" }
                dd {
                    (role(c.role))
                    @if c.stopped { " " span.badge { "Offline" } }
                    @if c.stopping { " " span.badge.warn { "stopping" } }
                    @if !c.healthy { " " span.badge.bad { "unhealthy" } }
                    @if c.since_unix > 0 { " since " (when(c.since_unix)) }
                }
                dt { (peer) }
                dd {
                    @if c.peer_alive {
                        (role(c.peer_role))
                        @if c.peer_stopped { " " span.badge { "Offline" } }
                        @if !c.peer_eligible { " " span.badge.warn { "not eligible" } }
                    } @else {
                        span.badge.bad { "not heard" } " role " (unknown())
                    }
                }
            }
        }
    }
}

fn group(c: &ClusterStatus) -> Markup {
    let runs = if c.role == Some(Role::Active) {
        Some(c.servers.0.as_str())
    } else if c.peer_alive && c.peer_role == Some(Role::Active) {
        Some(c.servers.1.as_str())
    } else {
        None
    };
    html! {
        section.card aria-labelledby="group" {
            h2 #group { "Group" }
            dl.facts {
                dt { "Runs on" }
                dd { @if let Some(server) = runs { strong { (server) } } @else { (unknown()) } }
                dt { "Takeovers by this server" }
                dd {
                    (c.takeovers.count)
                    @if let Some(last) = c.takeovers.last_unix { ", last " (when(last)) }
                }
                dt { "Last role change" }
                dd { @if let Some(change) = &c.last_change { (change) } @else { "none" } }
                dt { "Monitor failovers counted" } dd { (c.failovers) }
            }
        }
    }
}

fn links_and_monitors(c: &ClusterStatus) -> Markup {
    let (me, peer) = &c.servers;
    html! {
        section.card aria-labelledby="interconnects" {
            h2 #interconnects { "Interconnects" }
            dl.facts {
                @for (name, up) in &c.links {
                    dt { (name) } dd { (yes_no(*up, "peer heard", "peer not heard")) }
                }
            }
            @if c.links.is_empty() { p.sub { "None configured." } }
        }
        section.card aria-labelledby="monitors" {
            h2 #monitors { "Monitors" }
            @if c.monitors.is_empty() {
                p.sub { "None configured." }
            } @else {
                table.grid {
                    thead { tr { th { "Monitor" } th { (me) } th { (peer) } } }
                    tbody {
                        @for (name, state) in &c.monitors {
                            @let theirs = c.peer_monitors.iter().find(|(n, _)| n == name).and_then(|(_, s)| *s).filter(|_| c.peer_alive);
                            tr { td { (name) } td { (monitor(Some(*state))) } td { (monitor(theirs)) } }
                        }
                    }
                }
            }
        }
    }
}

fn settings(nav: &Nav, c: &ClusterStatus) -> Markup {
    let peer = c.peer_settings.as_ref().filter(|_| c.peer_alive);
    let same = peer.map(|p| *p == c.settings);
    html! {
        section.card aria-labelledby="sync" {
            h2 #sync { "Settings sync" }
            dl.facts {
                dt { (c.servers.0) } dd.mono { "generation " (c.settings.0) " · " (c.settings.1) }
                dt { (c.servers.1) }
                dd.mono { @if let Some((g, h)) = peer { "generation " (g) " · " (h) } @else { (unknown()) } }
                dt { "Same settings" }
                dd { @match same { Some(s) => (yes_no(s, "yes", "no")), None => (unknown()) } }
                dt { "Last push" }
                dd {
                    @match &c.sync {
                        Some(SyncState::Synchronized { generation }) => { "taken (generation " (generation) ")" }
                        Some(SyncState::NotSynchronized { reason }) => { span.badge.bad { "not taken" } " " (reason) }
                        None => "none from this server",
                    }
                }
            }
            @if c.role == Some(Role::Active) {
                form.inline method="post" action="/cluster/sync" {
                    input type="hidden" name="csrf" value=(nav.csrf);
                    button type="submit" { "Sync settings" }
                }
            }
        }
    }
}

fn replication(c: &ClusterStatus) -> Markup {
    html! {
        section.card aria-labelledby="replication" {
            h2 #replication { "Flow replication" }
            @if let Some(r) = &c.replication {
                dl.facts {
                    dt { "This server" } dd { (r.stream) }
                    dt { "Connection" } dd { (yes_no(r.connected, "up", "down")) }
                    dt { "Caught up" } dd { (yes_no(r.caught_up, "yes", "no")) }
                    dt { "Lag" } dd { (r.lag_messages) " messages · " (r.lag_flows) " flows · " (r.lag_ms) " ms" }
                    dt { "Flows" } dd { (r.flows) " in " (r.messages) " messages" }
                    dt { "Resyncs · gaps · resends" } dd { (r.resyncs) " · " (r.gaps) " · " (r.resends) }
                    @if let Some(e) = &r.last_error { dt { "Last error" } dd { (e) } }
                }
            } @else {
                p.sub { "Not running on this server." }
            }
        }
    }
}

fn operations() -> Markup {
    html! {
        section.card aria-labelledby="operations" {
            h2 #operations { "Operations" }
            ul.operations {
                @for (op, what) in OPERATIONS {
                    li {
                        a.button href=(format!("/cluster/confirm/{}", op.name())) { (button(op)) }
                        span.sub { (what) }
                    }
                }
            }
        }
    }
}

/// The page: the pair from `status`, and the cluster's settings from
/// `config` (editable on a node that says it is active).
pub fn page(
    nav: &Nav,
    status: &Result<Status, String>,
    config: &Result<lb_common::api::Config, String>,
    outcome: Option<&Outcome>,
) -> String {
    let writable = matches!(super::lb::writable(status), super::lb::Writable::Yes);
    app(
        nav,
        html! {
            @match outcome {
                Some(Outcome::Done(message)) => { p.notice.wide role="status" { (message) } }
                Some(Outcome::Refused(message)) => { p.error.wide role="alert" { (message) } }
                None => {}
            }
            @match status {
                Ok(Status { cluster: Some(c), .. }) => {
                    (servers(c)) (group(c)) (links_and_monitors(c)) (settings(nav, c)) (replication(c)) (operations())
                    (super::cluster_settings::section(config, writable))
                }
                Ok(_) => {
                    section.card.wide { h2 { "Cluster" } p { "This node is not part of a cluster (standalone)." } }
                }
                Err(why) => {
                    section.card.wide {
                        h2 { "Cluster" }
                        dl.facts { dt { "Role" } dd { (unknown()) } dt { "Group" } dd { (unknown()) } }
                        p.error role="status" { (why) }
                    }
                }
            }
        },
    )
}

/// The confirmation of `op`: what it does, and the form that does it.
pub fn confirm(nav: &Nav, op: ClusterOperation, status: &Result<Status, String>) -> String {
    let what = OPERATIONS
        .iter()
        .find(|(o, _)| *o == op)
        .map(|(_, w)| *w)
        .unwrap_or("");
    let now = SystemTime::now();
    app(
        nav,
        html! {
            section.card aria-labelledby="confirm" {
                h2 #confirm { (title(op)) "?" }
                p { (what) }
                @match status {
                    Ok(Status { cluster: Some(c), .. }) => {
                        p.sub { "Now: " (c.servers.0) " is " (c.role.map(|r| r.to_string()).unwrap_or_else(|| "without a role".into()))
                            "; " (c.servers.1) " is "
                            @if c.peer_alive { (c.peer_role.map(|r| r.to_string()).unwrap_or_else(|| "without a role".into())) } @else { (unknown()) }
                            " (" (utc(now)) ")." }
                    }
                    _ => { p.sub { "The cluster's state is " (unknown()) "." } }
                }
                form.inline method="post" action=(format!("/cluster/{}", op.name())) {
                    input type="hidden" name="csrf" value=(nav.csrf);
                    input type="hidden" name="confirm" value="yes";
                    button type="submit" { (title(op)) }
                    " " a href="/cluster" { "Cancel" }
                }
            }
        },
    )
}
