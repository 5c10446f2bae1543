//! LB settings: the services with their backends (health, weight, state,
//! live counters) and sorry servers, as the daemon's `/v1/stats` answers,
//! and the forms that change them. A refused form is shown again with the
//! reason next to its field and what the operator typed. On a standby (or
//! when the role is unknown) the page is read-only.
use lb_common::api::{
    BackendState, BackendView, Check, Config, Health, HealthSpec, Mode, Resolution, ServiceView,
    Stats, Status, Timing,
};
use maud::{Markup, html};

use super::{Nav, app, unknown};
use crate::system::human_bytes;

/// A form the console refused, or the daemon did: which form (its key),
/// the field the reason belongs to, the reason, and what was typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failed {
    pub form: String,
    pub field: String,
    pub message: String,
    pub typed: Vec<(String, String)>,
}

impl Failed {
    fn about(&self, form: &str) -> bool {
        self.form == form
    }
}

/// Whether changes may be made here, and if not why.
pub enum Writable {
    Yes,
    /// A standby: the active's console (if known) and its node name.
    Standby {
        active: Option<String>,
    },
    /// The daemon did not say its role.
    Unknown(String),
}

/// What the page is made of.
pub struct LbPage<'a> {
    pub status: &'a Result<Status, String>,
    pub stats: &'a Result<Stats, String>,
    /// The daemon's configuration (`GET /v1/config`): the services' health
    /// checks.
    pub config: &'a Result<Config, String>,
    /// The console of the other node (`--peer-console`).
    pub peer_console: Option<&'a str>,
    pub failed: Option<&'a Failed>,
    /// The last change applied (after a redirect).
    pub applied: Option<&'a str>,
}

/// Whether this node takes changes: only a node whose daemon says it is
/// not a cluster's standby.
pub fn writable(status: &Result<Status, String>) -> Writable {
    match status {
        Ok(status) => match status.cluster.as_ref() {
            Some(cluster) if cluster.role != Some(lb_common::api::Role::Active) => {
                Writable::Standby {
                    active: cluster
                        .peer_role
                        .filter(|r| *r == lb_common::api::Role::Active)
                        .map(|_| cluster.servers.1.clone()),
                }
            }
            _ => Writable::Yes,
        },
        Err(why) => Writable::Unknown(why.clone()),
    }
}

/// The form keys (which form a [`Failed`] is about).
pub fn key_add_backend(service: &str) -> String {
    format!("add-backend {service}")
}
pub fn key_backend(what: &str, service: &str, address: &str) -> String {
    format!("{what} {service} {address}")
}
pub const KEY_ADD_SERVICE: &str = "add-service";
pub fn key_sorry(service: &str) -> String {
    format!("sorry {service}")
}
pub fn key_health(service: &str) -> String {
    format!("health {service}")
}
pub fn key_delete_service(service: &str) -> String {
    format!("delete-service {service}")
}

/// What the operator typed in `field` of the failed form `key`, else
/// `default`.
pub(crate) fn typed(failed: Option<&Failed>, key: &str, field: &str, default: &str) -> String {
    failed
        .filter(|f| f.about(key))
        .and_then(|f| f.typed.iter().find(|(k, _)| k == field))
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| default.to_owned())
}

/// `aria-invalid` of `field` in form `key`: set when the reason is its.
pub(crate) fn invalid(failed: Option<&Failed>, key: &str, field: &str) -> Option<&'static str> {
    failed
        .filter(|f| f.about(key) && f.field == field)
        .map(|_| "true")
}

/// The reason next to `field` of form `key`, if it failed there.
pub(crate) fn reason(failed: Option<&Failed>, key: &str, field: &str) -> Markup {
    html! {
        @if let Some(f) = failed.filter(|f| f.about(key) && f.field == field) {
            p.error.field-error role="alert" id=(format!("{}-error", field)) { (f.message) }
        }
    }
}

fn badge_health(health: Health) -> Markup {
    match health {
        Health::Up => html! { span.badge.ok { "up" } },
        Health::Down => html! { span.badge.bad { "down" } },
    }
}

fn state_name(state: BackendState) -> &'static str {
    match state {
        BackendState::Enabled => "enabled",
        BackendState::Drained => "drained",
        BackendState::Disabled => "disabled",
    }
}

fn badge_state(state: BackendState) -> Markup {
    let class = match state {
        BackendState::Enabled => "badge ok",
        BackendState::Drained => "badge warn",
        BackendState::Disabled => "badge bad",
    };
    html! { span class=(class) { (state_name(state)) } }
}

fn badge_neighbour(n: Resolution) -> Markup {
    match n {
        Resolution::Resolved => html! {},
        other => {
            html! { span.badge.warn title="the next hop's link-layer address" { "neighbour " (other) } }
        }
    }
}

fn hidden(nav: &Nav, service: &str, address: Option<&str>) -> Markup {
    html! {
        input type="hidden" name="csrf" value=(nav.csrf);
        input type="hidden" name="service" value=(service);
        @if let Some(address) = address {
            input type="hidden" name="address" value=(address);
        }
    }
}

fn backend(nav: &Nav, page: &LbPage, service: &str, b: &BackendView, write: bool) -> Markup {
    let address = b.address.to_string();
    let weight_key = key_backend("weight", service, &address);
    let state_key = key_backend("state", service, &address);
    let delete_key = key_backend("delete-backend", service, &address);
    let failed = page.failed;
    html! {
        li.backend {
            div.what {
                code.address { (address) }
                (badge_health(b.health)) (badge_state(b.state)) (badge_neighbour(b.neighbour))
            }
            div.counters.sub {
                "weight " strong { (b.weight) } " · "
                (b.traffic.packets) " packets · " (human_bytes(b.traffic.bytes)) " · "
                (b.traffic.new_flows) " new flows"
            }
            @if write {
                div.actions {
                    form.inline method="post" action="/lb/backend/weight" {
                        (hidden(nav, service, Some(&address)))
                        label.sr for=(format!("weight-{service}-{address}")) { "Weight of " (address) }
                        input.narrow id=(format!("weight-{service}-{address}")) name="weight" inputmode="numeric"
                            aria-invalid=[invalid(failed, &weight_key, "weight")]
                            value=(typed(failed, &weight_key, "weight", &b.weight.to_string()));
                        button.quiet type="submit" { "Set weight" }
                    }
                    form.inline method="post" action="/lb/backend/state" {
                        (hidden(nav, service, Some(&address)))
                        @for (state, label) in [(BackendState::Drained, "Drain"), (BackendState::Enabled, "Enable"), (BackendState::Disabled, "Disable")] {
                            @if state != b.state {
                                button.quiet type="submit" name="state" value=(state_name(state)) { (label) }
                            }
                        }
                    }
                    form.inline method="post" action="/lb/backend/delete" {
                        (hidden(nav, service, Some(&address)))
                        button.quiet.danger type="submit" { "Delete" }
                    }
                }
                (reason(failed, &weight_key, "weight"))
                (reason(failed, &state_key, "state"))
                (reason(failed, &delete_key, "address"))
            }
        }
    }
}

fn add_backend(nav: &Nav, page: &LbPage, service: &str) -> Markup {
    let key = key_add_backend(service);
    let failed = page.failed;
    let state = typed(failed, &key, "state", "enabled");
    let id = |field: &str| format!("add-{field}-{service}");
    html! {
        form.add method="post" action="/lb/backend/add" {
            (hidden(nav, service, None))
            div.field.grow {
                label for=(id("address")) { "New backend (address:port)" }
                input id=(id("address")) name="address" placeholder="198.18.1.11:80"
                    aria-invalid=[invalid(failed, &key, "address")]
                    value=(typed(failed, &key, "address", ""));
            }
            div.field {
                label for=(id("weight")) { "Weight" }
                input.narrow id=(id("weight")) name="weight" inputmode="numeric"
                    aria-invalid=[invalid(failed, &key, "weight")]
                    value=(typed(failed, &key, "weight", "1"));
            }
            div.field {
                label for=(id("state")) { "State" }
                select id=(id("state")) name="state" {
                    @for s in ["enabled", "drained", "disabled"] {
                        option value=(s) selected[s == state] { (s) }
                    }
                }
            }
            button type="submit" { "Add backend" }
        }
        @for field in ["address", "weight", "state", "service"] {
            (reason(failed, &key, field))
        }
    }
}

/// The sorry server, editable (empty: none).
fn sorry_form(nav: &Nav, page: &LbPage, service: &str, s: &ServiceView) -> Markup {
    let key = key_sorry(service);
    let current = s.sorry.map(|a| a.to_string()).unwrap_or_default();
    html! {
        form.inline method="post" action="/lb/service/sorry" {
            (hidden(nav, service, None))
            label.sr for=(format!("sorry-{service}")) { "Sorry server of " (service) }
            input.medium id=(format!("sorry-{service}")) name="sorry" placeholder="none"
                aria-invalid=[invalid(page.failed, &key, "sorry")]
                value=(typed(page.failed, &key, "sorry", &current));
            button.quiet type="submit" { "Set" }
        }
        (reason(page.failed, &key, "sorry"))
        (reason(page.failed, &key, "service"))
    }
}

/// A health check in words: `http GET /healthz → 200 · every 2000 ms,
/// timeout 1000 ms · up after 2, down after 3`.
fn health_summary(spec: Option<&HealthSpec>) -> Markup {
    let Some(spec) = spec else {
        return html! { "none (backends are always up)" };
    };
    let Timing {
        interval_ms,
        timeout_ms,
        rise,
        fall,
    } = spec.timing;
    html! {
        strong { (spec.check.kind()) }
        @match &spec.check {
            Check::Http { path, expect_status, body_contains, host }
            | Check::Https { path, expect_status, body_contains, host, .. } => {
                " GET " code { (path) } " → " (expect_status)
                @if let Some(body) = body_contains { ", body contains " code { (body) } }
                @if let Some(host) = host { ", host " code { (host) } }
            }
            _ => {}
        }
        @if let Check::Https { verify_certificate, .. } = &spec.check {
            @if *verify_certificate { ", certificate verified" } @else { ", certificate not verified" }
        }
        @if spec.check != Check::None {
            " · every " (interval_ms) " ms, timeout " (timeout_ms) " ms · up after "
            (rise) ", down after " (fall)
        }
    }
}

/// The service's health check and, on a writable node, its form (in a
/// `details`, open when it was refused).
fn health(nav: &Nav, page: &LbPage, service: &str, write: bool) -> Markup {
    let config = match page.config {
        Ok(config) => config,
        Err(why) => return html! { (unknown()) " " span.sub { "(" (why) ")" } },
    };
    let Some(current) = config
        .services
        .iter()
        .find(|c| c.name().to_string() == service)
    else {
        return html! { (unknown()) " " span.sub { "(not in the daemon's configuration)" } };
    };
    let spec = current.health.as_ref();
    let key = key_health(service);
    let failed = page.failed.filter(|f| f.about(&key));
    let t = |field: &str, default: &str| typed(failed, &key, field, default);
    // The current values, as the form writes them.
    let (kind, path, status, body, host, verify) = match spec.map(|s| &s.check) {
        None => ("none", "", String::new(), "", "", false),
        Some(check) => match check {
            Check::Http {
                path,
                expect_status,
                body_contains,
                host,
            }
            | Check::Https {
                path,
                expect_status,
                body_contains,
                host,
                ..
            } => (
                check.kind(),
                path.as_str(),
                expect_status.to_string(),
                body_contains.as_deref().unwrap_or(""),
                host.as_deref().unwrap_or(""),
                matches!(
                    check,
                    Check::Https {
                        verify_certificate: true,
                        ..
                    }
                ),
            ),
            _ => (check.kind(), "", String::new(), "", "", false),
        },
    };
    let timing = spec.map(|s| s.timing).unwrap_or_default();
    let kind = t("kind", kind);
    let verify = match failed {
        Some(_) => t("verify_certificate", "") == "yes",
        None => verify,
    };
    let id = |field: &str| format!("health-{field}-{service}");
    let input =
        |field: &'static str, label: &str, value: String, placeholder: &str, numeric: bool| {
            html! {
                div.field {
                    label for=(id(field)) { (label) }
                    input.narrow[numeric] id=(id(field)) name=(field) placeholder=(placeholder)
                        inputmode=[numeric.then_some("numeric")]
                        aria-invalid=[invalid(failed, &key, field)] value=(t(field, &value));
                }
            }
        };
    html! {
        (health_summary(spec))
        @if write {
            details.edit open[failed.is_some()] {
                summary { "Edit the health check" }
                form.add method="post" action="/lb/service/health" {
                    (hidden(nav, service, None))
                    div.field {
                        label for=(id("kind")) { "Check" }
                        select id=(id("kind")) name="kind" aria-invalid=[invalid(failed, &key, "kind")] {
                            @for (k, label) in [("none", "none"), ("tcp", "TCP connect"), ("http", "HTTP GET"), ("https", "HTTPS GET"), ("icmp", "ICMP echo")] {
                                option value=(k) selected[k == kind] { (label) }
                            }
                        }
                    }
                    (input("path", "Path (HTTP/S)", path.to_owned(), "/", false))
                    (input("expect_status", "Status (HTTP/S)", status, "200", true))
                    (input("body_contains", "Body contains (HTTP/S)", body.to_owned(), "any body", false))
                    (input("host", "Host (HTTP/S)", host.to_owned(), "the backend", false))
                    div.field {
                        label for=(id("verify_certificate")) { "Verify certificate (HTTPS)" }
                        input id=(id("verify_certificate")) type="checkbox" name="verify_certificate" value="yes" checked[verify];
                    }
                    (input("interval_ms", "Interval (ms)", timing.interval_ms.to_string(), "2000", true))
                    (input("timeout_ms", "Timeout (ms)", timing.timeout_ms.to_string(), "1000", true))
                    (input("rise", "Up after", timing.rise.to_string(), "2", true))
                    (input("fall", "Down after", timing.fall.to_string(), "3", true))
                    button type="submit" { "Set health check" }
                }
                p.sub { "Every backend of the service is checked this way (unless it has its own check). An empty field takes the default shown. Check none: backends are always up." }
                @for field in crate::forms::HEALTH_FIELDS { (reason(failed, &key, field)) }
                (reason(failed, &key, "service"))
            }
        }
    }
}

fn service(nav: &Nav, page: &LbPage, s: &ServiceView, write: bool) -> Markup {
    let name = s.service.to_string();
    let mode = match s.mode {
        Mode::Nat => "NAT",
        Mode::Dsr => "DSR",
    };
    let delete_key = key_delete_service(&name);
    html! {
        section.card.wide.service aria-label=(name) {
            div.head {
                h2 {
                    code { (name) }
                    @if let Some(label) = &s.name { " " span.sub { (label) } }
                }
                span.badge { (mode) }
                @if s.no_usable_backend {
                    span.badge.bad { "no usable backend" }
                }
            }
            dl.facts {
                dt { "Sorry server" }
                dd {
                    @if write {
                        (sorry_form(nav, page, &name, s))
                    } @else if let Some(sorry) = s.sorry { code { (sorry) } } @else { "none" }
                }
                dt { "Health check" }
                dd { (health(nav, page, &name, write)) }
                dt { "Traffic" }
                dd { (s.traffic.packets) " packets · " (human_bytes(s.traffic.bytes)) " · " (s.traffic.new_flows) " new flows" }
            }
            @if s.backends.is_empty() {
                p.sub { "No backends." }
            } @else {
                ul.backends {
                    @for b in &s.backends { (backend(nav, page, &name, b, write)) }
                }
            }
            @if write {
                (add_backend(nav, page, &name))
                form.inline.end method="post" action="/lb/service/delete" {
                    (hidden(nav, &name, None))
                    button.quiet.danger type="submit" { "Delete service " (name) }
                }
                (reason(page.failed, &delete_key, "service"))
            }
        }
    }
}

fn add_service(nav: &Nav, page: &LbPage) -> Markup {
    let failed = page.failed;
    let key = KEY_ADD_SERVICE;
    let t = |field: &str, default: &str| typed(failed, key, field, default);
    let protocol = t("protocol", "tcp");
    let mode = t("mode", "nat");
    html! {
        section.card aria-labelledby="add-service" {
            h2 #add-service { "Add a service" }
            form.stack method="post" action="/lb/service/add" {
                input type="hidden" name="csrf" value=(nav.csrf);
                label for="svc-vip" { "Virtual IP" }
                input #svc-vip name="vip" placeholder="198.18.0.100" aria-invalid=[invalid(failed, key, "vip")] value=(t("vip", ""));
                (reason(failed, key, "vip"))
                label for="svc-port" { "Port" }
                input #svc-port name="port" inputmode="numeric" placeholder="80" aria-invalid=[invalid(failed, key, "port")] value=(t("port", ""));
                (reason(failed, key, "port"))
                label for="svc-protocol" { "Protocol" }
                select #svc-protocol name="protocol" {
                    @for p in ["tcp", "udp"] { option value=(p) selected[p == protocol] { (p) } }
                }
                (reason(failed, key, "protocol"))
                label for="svc-mode" { "Forwarding" }
                select #svc-mode name="mode" {
                    option value="nat" selected[mode == "nat"] { "NAT (two-arm)" }
                    option value="dsr" selected[mode == "dsr"] { "DSR (direct server return)" }
                }
                (reason(failed, key, "mode"))
                label for="svc-sorry" { "Sorry server (optional)" }
                input #svc-sorry name="sorry" placeholder="198.18.1.99:80" aria-invalid=[invalid(failed, key, "sorry")] value=(t("sorry", ""));
                (reason(failed, key, "sorry"))
                label for="svc-name" { "Label (optional)" }
                input #svc-name name="name" value=(t("name", ""));
                button type="submit" { "Add service" }
            }
            (reason(failed, key, "service"))
        }
    }
}

fn counters(stats: &Stats) -> Markup {
    html! {
        section.card aria-labelledby="counters" {
            h2 #counters { "Packet counters (this node)" }
            dl.facts {
                @for (name, value) in &stats.counters {
                    dt { (name.replace('_', " ")) } dd { (value) }
                }
            }
        }
    }
}

/// The confirmation of a service's deletion (its backends go with it).
pub fn confirm_delete(nav: &Nav, service: &str) -> String {
    app(
        nav,
        html! {
            section.card aria-labelledby="confirm" {
                h2 #confirm { "Delete service " code { (service) } "?" }
                p { "The service and all its backends are removed: new and existing connections to it are no longer forwarded." }
                form.inline method="post" action="/lb/service/delete" {
                    (hidden(nav, service, None))
                    input type="hidden" name="confirm" value="yes";
                    button.danger-fill type="submit" { "Delete service" }
                    " " a href="/lb" { "Cancel" }
                }
            }
        },
    )
}

pub fn page(nav: &Nav, page: &LbPage) -> String {
    let writable = writable(page.status);
    let write = matches!(writable, Writable::Yes);
    app(
        nav,
        html! {
            @if let Some(applied) = page.applied {
                p.notice.wide role="status" { (applied) }
            }
            @match &writable {
                Writable::Yes => {}
                Writable::Standby { active } => {
                    section.card.wide.readonly role="note" {
                        h2 { "Read-only: this node is the standby" }
                        p {
                            "The LB settings are changed on the active node"
                            @if let Some(active) = active { " (" strong { (active) } ")" }
                            ", which pushes them to this one. "
                            @if let Some(url) = page.peer_console {
                                a href=(url) { "Open the active node's console" } "."
                            } @else {
                                "Open the other node's console to change them."
                            }
                        }
                    }
                }
                Writable::Unknown(why) => {
                    section.card.wide.readonly role="note" {
                        h2 { "Read-only: the node's role is " (unknown()) }
                        p.error { (why) }
                    }
                }
            }
            @match page.stats {
                Ok(stats) => {
                    @if stats.services.is_empty() {
                        section.card.wide { h2 { "Services" } p.sub { "No services are configured." } }
                    }
                    @for s in &stats.services { (service(nav, page, s, write)) }
                    @if write { (add_service(nav, page)) }
                    (counters(stats))
                }
                Err(why) => {
                    section.card.wide {
                        h2 { "Services" }
                        p { "Services and backends: " (unknown()) }
                        p.error role="status" { (why) }
                    }
                }
            }
        },
    )
}
