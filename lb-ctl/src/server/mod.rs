//! The daemon's HTTP edges: the local API on a Unix socket and the
//! Prometheus metrics on a TCP address. Thin: each handler parses the
//! request, sends an event to the daemon's event loop, awaits the answer
//! and maps it to an HTTP status; every decision is the daemon's. A loop
//! that is gone or does not answer within `event_loop::ANSWER_TIMEOUT`
//! gets a 503 that says so, never a request that hangs.
use axum::{
    Json, Router,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;

mod metrics;

pub use metrics::{metrics_router, serve_metrics};

use crate::{
    api::{Accepted, ApiError, Change, ClusterOperation, Synchronized},
    config::Config,
    daemon::{ChangeError, Event, Handle, LoopError, event_loop::STANDALONE},
};

/// The local API (see `api` for the table of routes).
pub fn api_router(daemon: Handle) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/services", get(services))
        .route("/v1/stats", get(stats))
        .route("/v1/alerts", get(alerts))
        .route("/v1/config", get(export).put(import))
        .route("/v1/config/check", post(check))
        .route("/v1/changes", post(change))
        .route("/v1/cluster/{operation}", post(cluster_operation))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such API route (see lb-ctl --help)".into(),
            )
        })
        .with_state(daemon)
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(ApiError { error: message })).into_response()
}

fn change_error(err: ChangeError) -> Response {
    let status = match err {
        ChangeError::Invalid(_) => StatusCode::BAD_REQUEST,
        ChangeError::NotFound(_) => StatusCode::NOT_FOUND,
        ChangeError::Conflict(_) => StatusCode::CONFLICT,
        ChangeError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, err.to_string())
}

/// The daemon's event loop did not answer (stopped or stalled): 503.
pub(super) fn loop_error(err: LoopError) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, err.to_string())
}

/// Asks the daemon's event loop and answers with its JSON.
async fn ask<T: serde::Serialize>(
    daemon: &Handle,
    request: impl FnOnce(tokio::sync::oneshot::Sender<T>) -> Event,
) -> Response {
    match daemon.ask(request).await {
        Ok(answer) => Json(answer).into_response(),
        Err(err) => loop_error(err),
    }
}

/// A change's answer: its result, or why it was not applied.
fn applied(answer: Result<Result<crate::api::Applied, ChangeError>, LoopError>) -> Response {
    match answer {
        Ok(Ok(applied)) => Json(applied).into_response(),
        Ok(Err(err)) => change_error(err),
        Err(err) => loop_error(err),
    }
}

async fn status(State(daemon): State<Handle>) -> Response {
    ask(&daemon, Event::Status).await
}

async fn services(State(daemon): State<Handle>) -> Response {
    ask(&daemon, Event::Services).await
}

async fn stats(State(daemon): State<Handle>) -> Response {
    match daemon.ask(Event::Stats).await {
        Ok(Ok(stats)) => Json(stats).into_response(),
        Ok(Err(err)) => error(StatusCode::INTERNAL_SERVER_ERROR, err),
        Err(err) => loop_error(err),
    }
}

#[derive(Deserialize)]
struct AlertsQuery {
    limit: Option<usize>,
}

async fn alerts(State(daemon): State<Handle>, Query(q): Query<AlertsQuery>) -> Response {
    let limit = q.limit.unwrap_or(50).min(10_000);
    ask(&daemon, |answer| Event::Alerts { limit, answer }).await
}

async fn export(State(daemon): State<Handle>) -> Response {
    ask(&daemon, Event::ExportConfig).await
}

/// A body that is not the expected JSON gets a 400 with serde's words
/// (axum's own rejection would do too, but says less).
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid request body: {e}"))
}

async fn import(State(daemon): State<Handle>, body: axum::body::Bytes) -> Response {
    let config: Config = match parse(&body) {
        Ok(c) => c,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    applied(
        daemon
            .ask(|answer| Event::ImportConfig {
                config: Box::new(config),
                answer,
            })
            .await,
    )
}

/// `POST /v1/config/check`: the verdict on a configuration (200 whether
/// valid or not; 400 for a body that is no configuration).
async fn check(State(daemon): State<Handle>, body: axum::body::Bytes) -> Response {
    let config: Config = match parse(&body) {
        Ok(c) => c,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    ask(&daemon, |answer| Event::CheckConfig {
        config: Box::new(config),
        answer,
    })
    .await
}

async fn change(State(daemon): State<Handle>, body: axum::body::Bytes) -> Response {
    let change: Change = match parse(&body) {
        Ok(c) => c,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    applied(daemon.ask(|answer| Event::Change { change, answer }).await)
}

/// `POST /v1/cluster/{failover,failback,stop,force-stop,start}`: asks the
/// cluster's event loop (the daemon's loop only says where it is); answers
/// what was done, or refuses (409) with the reason when it cannot be done
/// now.
async fn cluster_operation(
    State(daemon): State<Handle>,
    axum::extract::Path(operation): axum::extract::Path<String>,
) -> Response {
    use crate::cluster::node::Operation;
    if operation == "sync" {
        return cluster_sync(daemon).await;
    }
    let accepted: ClusterOperation = match operation.parse() {
        Ok(accepted) => accepted,
        Err(why) => return error(StatusCode::NOT_FOUND, why),
    };
    let operation = match accepted {
        ClusterOperation::Failover => Operation::Failover,
        ClusterOperation::Failback => Operation::Failback,
        ClusterOperation::Stop => Operation::Stop,
        ClusterOperation::ForceStop => Operation::ForceStop,
        ClusterOperation::Start => Operation::Start,
    };
    let operations = match daemon.ask(Event::ClusterRoute).await {
        Ok(Some(operations)) => operations,
        Ok(None) => return error(StatusCode::CONFLICT, STANDALONE.into()),
        Err(err) => return loop_error(err),
    };
    let (answer, result) = tokio::sync::oneshot::channel();
    if operations.send((operation, answer)).await.is_err() {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the cluster's event loop is not running".into(),
        );
    }
    match result.await {
        Ok(Ok(message)) => Json(Accepted { accepted, message }).into_response(),
        Ok(Err(refusal)) => error(StatusCode::CONFLICT, refusal),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the cluster's event loop did not answer".into(),
        ),
    }
}

/// `POST /v1/cluster/sync`: pushes the settings to the standby now (on the
/// active); 409 with the reason when the peer did not take them (or this
/// node is standalone or standby).
async fn cluster_sync(daemon: Handle) -> Response {
    match daemon.ask(Event::SyncNow).await {
        Ok(Ok(synchronized)) => Json(Synchronized { synchronized }).into_response(),
        Ok(Err(why)) => error(StatusCode::CONFLICT, why),
        Err(err) => loop_error(err),
    }
}
