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
