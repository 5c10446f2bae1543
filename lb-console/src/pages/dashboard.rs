//! The dashboard: what the console knows of this node: the machine's own
//! facts, the daemon's status as its API answers it, the pair and the
//! recent alerts; the daemon's and the pair's values are live
//! (`crate::live`).
use lb_common::api::Alert;
use maud::{Markup, html};

use super::{Nav, app, unknown};
use crate::{
    daemon::DaemonState,
    live,
    system::{self, Facts},
};

/// A fact, or "unknown" (never a guess).
fn fact(value: Option<String>) -> Markup {
    match value {
        Some(value) => html! { (value) },
        None => html! { span.unknown { "unknown" } },
    }
}

/// The daemon's card: its status, or unknown with why. Each value carries
/// `data-live` (its key in [`live::ROWS`]): the page's script (`/live.js`)
/// keeps it current.
fn daemon(state: &DaemonState) -> Markup {
    let live = live::values(state);
    html! {
        section.card aria-labelledby="daemon" {
            h2 #daemon { "Load balancer" }
            dl.facts {
                @for (key, label) in live::ROWS {
                    dt { (label) }
                    dd data-live=(key) {
                        @match live.values.get(key).cloned().flatten() {
                            Some(text) => (text),
                            None => (unknown()),
                        }
                    }
                }
            }
            p.error role="status" data-live="error" hidden[live.error.is_none()] {
                @if let Some(why) = &live.error { (why) }
            }
        }
        script src="/live.js" defer {}
    }
}

/// The pair at a glance (the cluster page has the rest), when the node is
/// clustered; its values are live like the daemon's (`data-live`).
fn pair(state: &DaemonState) -> Markup {
    let DaemonState::Answered(status) = state else {
        return html! {};
    };
    let Some(c) = &status.cluster else {
        return html! {};
    };
    let live = live::values(state);
    html! {
        section.card aria-labelledby="pair" {
            h2 #pair { "Pair" }
            dl.facts {
                @for (key, label) in live::PAIR_ROWS {
                    @let value = live.values.get(key).cloned().flatten();
                    // Replication: a row once the pair replicates.
                    @if key != "replication" || value.is_some() {
                        dt { (label.unwrap_or(&c.servers.1)) }
                        dd data-live=(key) {
                            @match value { Some(text) => (text), None => (unknown()) }
                        }
                    }
                }
            }
            p { a href="/cluster" { "Cluster details and operations" } }
        }
    }
}

/// The last alerts, or why they are unknown.
fn recent(alerts: &Result<Vec<Alert>, String>) -> Markup {
    html! {
        section.card aria-labelledby="recent" {
            h2 #recent { "Recent alerts" }
            // Rewritten by live.js with every answer of /live/status.
            div data-live-alerts {
                @match alerts {
                    Ok(alerts) if alerts.is_empty() => { p.sub { "No alerts." } }
                    Ok(alerts) => { (super::alerts::list(alerts)) }
                    Err(why) => { p { (unknown()) } p.error role="status" { (why) } }
                }
            }
            p { a href="/alerts" { "All alerts" } }
        }
    }
}

pub fn page(
    nav: &Nav,
    facts: &Facts,
    state: &DaemonState,
    alerts: &Result<Vec<Alert>, String>,
) -> String {
    let memory = facts.memory.map(|(total, available)| {
        format!(
            "{} of {} available",
            system::human_bytes(available),
            system::human_bytes(total)
        )
    });
    let load = facts
        .load
        .map(|[one, five, fifteen]| format!("{one:.2} · {five:.2} · {fifteen:.2}"));
    app(
        nav,
        html! {
            section.card aria-labelledby="node" {
                h2 #node { "This node" }
                dl.facts {
                    dt { "Host" } dd { (nav.host) }
                    dt { "Version" } dd { "lb " (nav.version) }
                    dt { "System time" } dd.mono { (system::utc(facts.time)) }
                    dt { "Uptime" } dd { (fact(facts.uptime.map(system::human_duration))) }
                    dt { "CPUs" } dd { (fact(facts.cpus.map(|n| n.to_string()))) }
                    dt { "Memory" } dd { (fact(memory)) }
                    dt { "Load (1, 5, 15 min)" } dd { (fact(load)) }
                }
            }
            (daemon(state))
            (pair(state))
            (recent(alerts))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::Section;
    use std::time::{Duration, SystemTime};

    #[test]
    fn known_facts_are_shown_and_unknown_ones_say_so() {
        let nav = Nav {
            host: "lb1",
            version: "0.1.0",
            user: "admin",
            csrf: "t",
            section: Section::Dashboard,
        };
        let facts = Facts {
            cpus: Some(2),
            memory: Some((24 << 30, 12 << 30)),
            uptime: Some(Duration::from_secs(3 * 3600 + 60)),
            load: None,
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_618_445),
        };
        let html = page(
            &nav,
            &facts,
            &DaemonState::Unknown("cannot reach the lb-ctl daemon".into()),
            &Err("cannot reach the lb-ctl daemon".into()),
        );
        for want in [
            "<dd>2</dd>",
            "<dd>12.0 GiB of 24.0 GiB available</dd>",
            "<dd>3 h 1 min</dd>",
            "2026-11-25 14:54:05 UTC",
            r#"<dt>Load (1, 5, 15 min)</dt><dd><span class="unknown">unknown</span></dd>"#,
        ] {
            assert!(html.contains(want), "{want} missing from {html}");
        }
    }
}
