//! What the console knows of the node's daemon: only what its API answers,
//! through the client and types of `lb_common::api` (the CLI's). A daemon
//! that does not answer is shown as unknown with the reason, never with a
//! value the console assumed.
use std::time::Duration;

use lb_common::api::{Client, Status};

/// The longest the console waits for the daemon's answer before it shows
/// the daemon as unknown (the daemon bounds its own answers well within
/// it; this covers a socket that accepts and never answers).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// The daemon's state as the dashboard shows it.
#[derive(Clone, Debug, PartialEq)]
pub enum DaemonState {
    /// The daemon answered `GET /v1/status`.
    Answered(Box<Status>),
    /// It did not (not running, refused, not understood, too slow): why.
    Unknown(String),
}

/// Asks the daemon for its status.
pub async fn status(client: &Client) -> DaemonState {
    match tokio::time::timeout(ANSWER_TIMEOUT, client.get::<Status>("/v1/status")).await {
        Ok(Ok(status)) => DaemonState::Answered(Box::new(status)),
        Ok(Err(err)) => DaemonState::Unknown(err.to_string()),
        Err(_) => DaemonState::Unknown(format!(
            "the lb-ctl daemon at {} did not answer within {} s",
            client.socket().display(),
            ANSWER_TIMEOUT.as_secs()
        )),
    }
}

/// The longest the console waits for the daemon to carry out a change or a
/// cluster operation (a failover waits for the pair's handover).
pub const CHANGE_TIMEOUT: Duration = Duration::from_secs(20);

/// Asks the daemon `GET path`; the reason as a sentence when it does not
/// answer (or refuses).
pub async fn get<T: serde::de::DeserializeOwned>(client: &Client, path: &str) -> Result<T, String> {
    bounded(client, ANSWER_TIMEOUT, client.get::<T>(path)).await
}

/// Sends `body` to the daemon (`POST /v1/changes`, `PUT /v1/config`, a
/// cluster operation); its refusal, as it words it, or why it did not
/// answer.
pub async fn send<B: serde::Serialize, T: serde::de::DeserializeOwned>(
    client: &Client,
    method: lb_common::api::client::Method,
    path: &str,
    body: &B,
) -> Result<T, String> {
    bounded(
        client,
        CHANGE_TIMEOUT,
        client.send::<B, T>(method, path, body),
    )
    .await
}

async fn bounded<T>(
    client: &Client,
    limit: Duration,
    answer: impl std::future::Future<Output = Result<T, lb_common::api::ClientError>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, answer).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!(
            "the lb-ctl daemon at {} did not answer within {} s",
            client.socket().display(),
            limit.as_secs()
        )),
    }
}
