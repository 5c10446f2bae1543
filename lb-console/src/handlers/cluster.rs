//! The cluster page: `GET /cluster`, `GET /cluster/confirm/{operation}`
//! (the confirmation step), `POST /cluster/{operation}` (with
//! `confirm=yes`) and `POST /cluster/sync`.
use axum::{
    Extension,
    extract::{Path, Request},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use lb_common::api::{Accepted, ClusterOperation, Synchronized, client::Method};

use super::{Posted, Shared, no_audit, page};
use crate::{
    auth::sessions::Session,
    forms::Form,
    pages::{
        Section,
        cluster::{self as view, OPERATIONS, Outcome},
    },
};

/// An operation this page offers.
fn offered(name: &str) -> Option<ClusterOperation> {
    let op = name.parse::<ClusterOperation>().ok()?;
    OPERATIONS.iter().any(|(o, _)| *o == op).then_some(op)
}

/// `GET /cluster`.
pub async fn show(Extension(app): Shared, Extension(session): Extension<Session>) -> Response {
    let status = app.status().await;
    let config = crate::daemon::get(&app.daemon, "/v1/config").await;
    page(
        StatusCode::OK,
        view::page(&app.nav(&session, Section::Cluster), &status, &config, None),
    )
}

/// `GET /cluster/confirm/{operation}`: asks before doing it.
pub async fn confirm(
    Extension(app): Shared,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
) -> Response {
    let Some(op) = offered(&name) else {
        return crate::not_found(
            format!("/cluster/confirm/{name}")
                .parse()
                .unwrap_or_default(),
        )
        .await
        .into_response();
    };
    let status = app.status().await;
    page(
        StatusCode::OK,
        view::confirm(&app.nav(&session, Section::Cluster), op, &status),
    )
}

/// `POST /cluster/{operation}` (confirmed) and `POST /cluster/sync`.
pub async fn operate(
    Extension(app): Shared,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let posted = match Posted::read(request).await {
        Ok(p) => p,
        Err(response) => return response,
    };
    let nav = app.nav(&session, Section::Cluster);
    let action = format!("cluster {name}");
    let answer = if name == "sync" {
        if !app.audit(&posted.who, &action, "", "sent to the daemon") {
            return no_audit();
        }
        crate::daemon::send::<_, Synchronized>(&app.daemon, Method::POST, "/v1/cluster/sync", &())
            .await
            .map(|s| format!("Settings synchronized: {}", s.synchronized))
    } else {
        let Some(op) = offered(&name) else {
            return crate::not_found(posted.uri).await.into_response();
        };
        let form = Form::parse(&posted.body).unwrap_or_default();
        if form.get("confirm") != "yes" {
            app.audit(&posted.who, &action, "", "refused: not confirmed");
            let status = app.status().await;
            return page(StatusCode::BAD_REQUEST, view::confirm(&nav, op, &status));
        }
        if !app.audit(&posted.who, &action, "", "sent to the daemon") {
            return no_audit();
        }
        crate::daemon::send::<_, Accepted>(&app.daemon, Method::POST, &op.path(), &())
            .await
            .map(|a| a.message)
    };
    let (code, outcome) = match answer {
        Ok(message) => {
            app.audit(&posted.who, &action, "", "ok");
            (StatusCode::OK, Outcome::Done(message))
        }
        Err(why) => {
            app.audit(&posted.who, &action, "", &format!("refused: {why}"));
            (StatusCode::CONFLICT, Outcome::Refused(why))
        }
    };
    let status = app.status().await;
    let config = crate::daemon::get(&app.daemon, "/v1/config").await;
    page(code, view::page(&nav, &status, &config, Some(&outcome)))
}
