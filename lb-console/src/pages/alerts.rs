//! Alerts: the daemon's recent alerts (`GET /v1/alerts`), newest first.
use lb_common::api::{Alert, AlertLevel};
use maud::{Markup, html};

use super::{Nav, app, unknown};

/// How many alerts the page asks for.
pub const LIMIT: usize = 100;

/// `alerts` (oldest first, as the API gives them), newest first.
pub fn list(alerts: &[Alert]) -> Markup {
    html! {
        ol.alerts reversed {
            @for a in alerts.iter().rev() {
                @let class = match a.level {
                    AlertLevel::Info => "badge",
                    AlertLevel::Warning => "badge warn",
                    AlertLevel::Error => "badge bad",
                };
                li {
                    div.what {
                        span class=(class) { (a.level) }
                        code { (a.event) }
                        span.sub.mono { (a.time) }
                    }
                    p { (a.message) }
                }
            }
        }
    }
}

pub fn page(nav: &Nav, alerts: &Result<Vec<Alert>, String>) -> String {
    app(
        nav,
        html! {
            section.card.wide aria-labelledby="alerts" {
                h2 #alerts { "Recent alerts" }
                @match alerts {
                    Ok(alerts) if alerts.is_empty() => { p.sub { "No alerts." } }
                    Ok(alerts) => { (list(alerts)) }
                    Err(why) => {
                        p { "Alerts: " (unknown()) }
                        p.error role="status" { (why) }
                    }
                }
            }
        },
    )
}
