//! The logged-in pages' routes: each asks the node's daemon through its
//! API (`crate::daemon`), renders a page (`crate::pages`), and for a change
//! turns the form into the daemon's request, writes it to the audit trail
//! (before it is sent, and how it ended) and shows the outcome.
use std::{net::IpAddr, sync::Arc};

use axum::{
    Extension,
    body::Bytes,
    extract::Request,
    http::{StatusCode, Uri},
    response::{Html, IntoResponse, Response},
};
use lb_common::api::{Client, Status};

use crate::{
    auth::{audit::AuditEntry, sessions::Session},
    login::{self, Access},
    pages::{self, Nav, Section},
};

pub mod cluster;
pub mod cluster_settings;
pub mod config;
pub mod lb;
pub mod network;

/// What every page handler needs.
pub struct App {
    pub host: String,
    pub daemon: Client,
    /// The other node's console (`--peer-console`), linked from a
    /// standby's read-only pages.
    pub peer_console: Option<String>,
    pub access: Arc<Access>,
    /// The traffic history the sampler fills (`crate::traffic`).
    pub traffic: crate::traffic::Shared,
}

pub type Shared = Extension<Arc<App>>;

impl App {
    pub fn nav<'a>(&'a self, session: &'a Session, section: Section) -> Nav<'a> {
        Nav {
            host: &self.host,
            version: crate::VERSION,
            user: &session.user,
            csrf: &session.csrf,
            section,
        }
    }

    pub async fn status(&self) -> Result<Status, String> {
        crate::daemon::get(&self.daemon, "/v1/status").await
    }

    /// Writes a line of the audit trail; false when it cannot be written
    /// (the change must then not be made).
    pub fn audit(&self, who: &Who, action: &str, detail: &str, outcome: &str) -> bool {
        self.access.audit(&AuditEntry::now(
            &who.user, who.from, action, detail, outcome,
        ))
    }
}

/// Who asks: the session's user and the client's address.
pub struct Who {
    pub user: String,
    pub from: IpAddr,
}

/// A change request as the guard let it through: who, the path, the body,
/// and the console's own address of its connection (when served over TCP).
pub struct Posted {
    pub who: Who,
    pub local: Option<IpAddr>,
    pub uri: Uri,
    pub headers: axum::http::HeaderMap,
    pub body: Bytes,
}

impl Posted {
    pub async fn read(request: Request) -> Result<Posted, Response> {
        let from = login::peer(request.extensions());
        let user = request
            .extensions()
            .get::<Session>()
            .map(|s| s.user.clone())
            .unwrap_or_default();
        let local = request
            .extensions()
            .get::<crate::LocalAddr>()
            .map(|l| l.0.ip());
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, 1024 * 1024).await.map_err(|_| {
            login::refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request too large",
                "The form sent is larger than the console accepts.",
            )
        })?;
        Ok(Posted {
            who: Who { user, from },
            local,
            uri: parts.uri,
            headers: parts.headers,
            body,
        })
    }
}

/// A page with a status code.
pub fn page(status: StatusCode, html: String) -> Response {
    (status, Html(html)).into_response()
}

/// The audit trail cannot be written: nothing is changed.
pub fn no_audit() -> Response {
    login::refusal(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Nothing was changed",
        "The console cannot write its audit trail, and makes no change that it cannot record. See the console's log.",
    )
}

/// The alerts page.
pub async fn alerts(
    Extension(app): Shared,
    Extension(session): Extension<Session>,
) -> Html<String> {
    let alerts = crate::daemon::get(
        &app.daemon,
        &format!("/v1/alerts?limit={}", pages::alerts::LIMIT),
    )
    .await;
    Html(pages::alerts::page(
        &app.nav(&session, Section::Alerts),
        &alerts,
    ))
}

/// The dashboard's live values (`crate::live`), as JSON: the daemon asked
/// now; when it does not answer, every value is `null` with the reason.
pub async fn live_status(Extension(app): Shared) -> Response {
    let (state, alerts) = tokio::join!(
        crate::daemon::status(&app.daemon),
        crate::daemon::get::<Vec<lb_common::api::Alert>>(&app.daemon, RECENT_ALERTS),
    );
    let live = crate::live::values(&state).with_alerts(&alerts);
    match serde_json::to_string(&live) {
        Ok(json) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            json,
        )
            .into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}

/// The dashboard's recent alerts (on the page and in `/live/status`).
const RECENT_ALERTS: &str = "/v1/alerts?limit=5";

/// The dashboard's script.
pub async fn live_script() -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/javascript; charset=utf-8",
        )],
        crate::live::SCRIPT,
    )
}

/// Statistics: the traffic over the last minutes, as sampled.
pub async fn stats(Extension(app): Shared, Extension(session): Extension<Session>) -> Html<String> {
    let history = app
        .traffic
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    Html(pages::stats::page(
        &app.nav(&session, Section::Stats),
        &history,
    ))
}

/// The dashboard.
pub async fn dashboard(
    Extension(app): Shared,
    Extension(session): Extension<Session>,
) -> Html<String> {
    let state = crate::daemon::status(&app.daemon).await;
    let alerts = crate::daemon::get(&app.daemon, RECENT_ALERTS).await;
    Html(pages::dashboard::page(
        &app.nav(&session, Section::Dashboard),
        &crate::system::Facts::read(),
        &state,
        &alerts,
    ))
}

#[cfg(test)]
mod tests;
