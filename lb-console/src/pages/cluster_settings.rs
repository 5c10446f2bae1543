//! The cluster's settings (`[cluster]` as the daemon's `GET /v1/config`
//! holds it): shown on the cluster page, and edited as a draft on their
//! own page (`/cluster/settings`): the draft lives in the form itself;
//! "Validate" shows the daemon's verdict (`POST /v1/config/check`) with
//! each error at its field, "Apply" asks for a confirmation that lists
//! what changes, then sends the configuration (`PUT /v1/config`). On a
//! standby, or when the role is unknown, read-only.
use lb_common::api::{
    Config,
    config::{ClusterConfig, FinalAction, Monitor, MonitorKind, MonitorWhen},
};
use maud::{Markup, html};

use super::{Nav, app, unknown};

/// What the edit page says above the form.
pub enum Verdict {
    /// The daemon would apply the draft (and what the cluster takes live).
    Valid(String),
    /// The draft was refused: the field (a field of the form, or "" or
    /// "cluster" for the whole) and why.
    Refused { field: String, message: String },
}

fn kind(kind: MonitorKind) -> &'static str {
    match kind {
        MonitorKind::Link => "link",
        MonitorKind::Ip => "ip",
        MonitorKind::Process => "process",
        MonitorKind::Stall => "stall",
        MonitorKind::Exec => "exec",
    }
}

fn when(when: MonitorWhen) -> &'static str {
    match when {
        MonitorWhen::Always => "always",
        MonitorWhen::Active => "active",
    }
}

/// What a monitor watches, in words.
fn watches(m: &Monitor) -> String {
    match m.kind {
        MonitorKind::Link => format!("carrier of {}", m.interface.as_deref().unwrap_or("?")),
        MonitorKind::Ip => format!(
            "ping {}",
            m.targets
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        MonitorKind::Process => format!("process {}", m.process.as_deref().unwrap_or("?")),
        MonitorKind::Stall => "the event loops answer".to_owned(),
        MonitorKind::Exec => format!("command {}", m.command.join(" ")),
    }
}

fn targets(c: &ClusterConfig) -> String {
    c.np_targets
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The "Settings" card of the cluster page.
pub fn section(config: &Result<Config, String>, writable: bool) -> Markup {
    let cluster = match config {
        Ok(Config {
            cluster: Some(cluster),
            ..
        }) => cluster,
        Ok(_) => return html! {},
        Err(why) => {
            return html! {
                section.card.wide aria-labelledby="cluster-settings" {
                    h2 #cluster-settings { "Settings" }
                    p { "The cluster's settings: " (unknown()) }
                    p.error role="status" { (why) }
                }
            };
        }
    };
    html! {
        section.card.wide aria-labelledby="cluster-settings" {
            h2 #cluster-settings { "Settings" }
            dl.facts {
                dt { "Heartbeat" }
                dd { "every " (cluster.heartbeat_interval_ms) " ms; the peer is lost after "
                    (cluster.heartbeat_lost_after) " missed (" (cluster.heartbeat_interval_ms * u64::from(cluster.heartbeat_lost_after)) " ms)" }
                dt { "Automatic failback" } dd { @if cluster.auto_failback { "on" } @else { "off" } }
                dt { "Survivor" }
                dd { @if let Some(s) = &cluster.survivor { (s) } @else { (cluster.servers.first().map_or("", |s| s.name.as_str())) " (the first server)" } }
                dt { "Failover limit" }
                dd { (cluster.max_failovers) " monitor failovers in " (cluster.failover_window_s) " s, then final action "
                    strong { @match cluster.final_action { FinalAction::None => "none", FinalAction::Stop => "stop" } } }
                dt { "NP targets" }
                dd { @if cluster.np_targets.is_empty() { "none" } @else { code { (targets(cluster)) } } }
            }
            @if !cluster.monitors.is_empty() {
                table.grid {
                    thead { tr { th { "Monitor" } th { "Watches" } th { "Every" } th { "Timeout" } th { "Retries" } th { "Runs" } } }
                    tbody {
                        @for m in &cluster.monitors {
                            tr {
                                td { (m.name) " " span.sub { (kind(m.kind)) } }
                                td { (watches(m)) }
                                td { (m.interval_ms) " ms" }
                                td { (m.timeout_ms) " ms" }
                                td { (m.retries) }
                                td { (when(m.when)) @if !m.servers.is_empty() { " on " (m.servers.join(", ")) } }
                            }
                        }
                    }
                }
            }
            @if writable {
                p { a.button href="/cluster/settings" { "Edit settings" } }
            }
        }
    }
}

/// The draft's value of `field`: what was typed, else the current value.
fn value(typed: Option<&[(String, String)]>, field: &str, current: String) -> String {
    match typed {
        Some(typed) => typed
            .iter()
            .find(|(k, _)| k == field)
            .map(|(_, v)| v.clone())
            .unwrap_or_default(),
        None => current,
    }
}

/// The edit page: the draft (what was `typed`, else the daemon's current
/// settings), the verdict on it, Validate and Apply.
pub fn edit(
    nav: &Nav,
    cluster: &ClusterConfig,
    typed: Option<&[(String, String)]>,
    verdict: Option<&Verdict>,
) -> String {
    let refused = match verdict {
        Some(Verdict::Refused { field, message }) => Some((field.as_str(), message.as_str())),
        _ => None,
    };
    let at = |field: &str| refused.filter(|(f, _)| *f == field).map(|(_, m)| m);
    let v = |field: &str, current: String| value(typed, field, current);
    let number = |field: &str, label: &str, current: String| {
        html! {
            div.field {
                label for=(field) { (label) }
                input.narrow id=(field) name=(field) inputmode="numeric"
                    aria-invalid=[at(field).map(|_| "true")] value=(v(field, current));
            }
        }
    };
    let error = |field: &str| {
        html! {
            @if let Some(message) = at(field) {
                p.error.field-error role="alert" id=(format!("{field}-error")) { (message) }
            }
        }
    };
    let auto_failback = v(
        "auto_failback",
        if cluster.auto_failback { "yes" } else { "" }.into(),
    ) == "yes";
    let survivor = v("survivor", cluster.survivor.clone().unwrap_or_default());
    let final_action = v(
        "final_action",
        match cluster.final_action {
            FinalAction::None => "none",
            FinalAction::Stop => "stop",
        }
        .into(),
    );
    app(
        nav,
        html! {
            section.card.wide aria-labelledby="edit-settings" {
                h2 #edit-settings { "Cluster settings (draft)" }
                p.sub { "Nothing changes until you apply the draft. Validate asks the daemon whether it would take it: the same checks as Apply, nothing changed." }
                @match verdict {
                    Some(Verdict::Valid(message)) => { p.notice role="status" { (message) } }
                    Some(Verdict::Refused { field, message }) if field.is_empty() || field == "cluster" => {
                        p.error role="alert" id="cluster-error" { (message) }
                    }
                    Some(Verdict::Refused { .. }) => {
                        p.error role="alert" { "The draft was refused: see the field marked below." }
                    }
                    None => {}
                }
                form.settings method="post" action="/cluster/settings" {
                    input type="hidden" name="csrf" value=(nav.csrf);
                    fieldset {
                        legend { "Heartbeat (needs a restart of both nodes)" }
                        div.row {
                            (number("heartbeat_interval_ms", "Interval (ms)", cluster.heartbeat_interval_ms.to_string()))
                            (number("heartbeat_lost_after", "Lost after (heartbeats)", cluster.heartbeat_lost_after.to_string()))
                        }
                        (error("heartbeat_interval_ms")) (error("heartbeat_lost_after"))
                    }
                    fieldset {
                        legend { "Failover (applied live)" }
                        div.row {
                            div.field {
                                label for="auto_failback" { "Automatic failback" }
                                input #auto_failback type="checkbox" name="auto_failback" value="yes" checked[auto_failback];
                            }
                            div.field {
                                label for="survivor" { "Survivor" }
                                select #survivor name="survivor" aria-invalid=[at("survivor").map(|_| "true")] {
                                    option value="" selected[survivor.is_empty()] { "the first server" }
                                    @for s in &cluster.servers {
                                        option value=(s.name) selected[s.name == survivor] { (s.name) }
                                    }
                                }
                            }
                            (number("max_failovers", "Max failovers", cluster.max_failovers.to_string()))
                            (number("failover_window_s", "Window (s)", cluster.failover_window_s.to_string()))
                            div.field {
                                label for="final_action" { "Final action" }
                                select #final_action name="final_action" aria-invalid=[at("final_action").map(|_| "true")] {
                                    @for a in ["none", "stop"] { option value=(a) selected[a == final_action] { (a) } }
                                }
                            }
                        }
                        div.field.grow {
                            label for="np_targets" { "NP targets (addresses, separated by spaces)" }
                            input.medium #np_targets name="np_targets" placeholder="none"
                                aria-invalid=[at("np_targets").map(|_| "true")] value=(v("np_targets", targets(cluster)));
                        }
                        @for field in ["auto_failback", "survivor", "max_failovers", "failover_window_s", "final_action", "np_targets"] { (error(field)) }
                    }
                    @if !cluster.monitors.is_empty() {
                        fieldset {
                            legend { "Monitors (applied live)" }
                            @for (i, m) in cluster.monitors.iter().enumerate() {
                                @let f = |name: &str| format!("monitors[{i}].{name}");
                                div.row.monitor {
                                    input type="hidden" name=(f("name")) value=(m.name);
                                    div.field { span.name { (m.name) } span.sub { (watches(m)) } }
                                    (number(&f("interval_ms"), "Every (ms)", m.interval_ms.to_string()))
                                    (number(&f("timeout_ms"), "Timeout (ms)", m.timeout_ms.to_string()))
                                    (number(&f("retries"), "Retries", m.retries.to_string()))
                                    (number(&f("start_wait_ms"), "Start wait (ms)", m.start_wait_ms.to_string()))
                                    @let runs = v(&f("when"), when(m.when).into());
                                    div.field {
                                        label for=(f("when")) { "Runs" }
                                        select id=(f("when")) name=(f("when")) aria-invalid=[at(&f("when")).map(|_| "true")] {
                                            @for w in ["always", "active"] { option value=(w) selected[w == runs] { (w) } }
                                        }
                                    }
                                }
                                @for name in ["name", "interval_ms", "timeout_ms", "retries", "start_wait_ms", "when"] { (error(&f(name))) }
                            }
                        }
                    }
                    div.buttons {
                        button.quiet type="submit" name="action" value="validate" { "Validate" }
                        button type="submit" name="action" value="apply" { "Apply…" }
                        " " a href="/cluster" { "Cancel" }
                    }
                }
            }
        },
    )
}

/// The confirmation of an apply: what changes, the draft carried in
/// hidden fields, `confirm=yes`.
pub fn confirm(nav: &Nav, typed: &[(String, String)], changes: &str, live: &[String]) -> String {
    app(
        nav,
        html! {
            section.card.wide aria-labelledby="confirm" {
                h2 #confirm { "Apply these cluster settings?" }
                p { "Changes: " code { (changes) } }
                p.sub {
                    "The daemon validated the draft. "
                    @if live.is_empty() { "The cluster's running settings stay as they are." }
                    @else { "The cluster takes " (live.join(", ")) " live, without moving the group, and the settings push takes them to the other node; what they decide applies at once (a failing monitor hands the group over)." }
                }
                form.inline method="post" action="/cluster/settings" {
                    input type="hidden" name="csrf" value=(nav.csrf);
                    @for (k, v) in typed.iter().filter(|(k, _)| k != "action" && k != "confirm") {
                        input type="hidden" name=(k) value=(v);
                    }
                    input type="hidden" name="confirm" value="yes";
                    button.danger-fill type="submit" name="action" value="apply" { "Apply" }
                    " " button.quiet type="submit" name="action" value="validate" { "Back to the draft" }
                }
            }
        },
    )
}
