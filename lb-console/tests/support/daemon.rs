//! A fake daemon's API on a Unix socket for the browser tests: it answers
//! the pages' questions with the fixtures (`tests/fixtures/`, written as
//! `lb-ctl run` answers) and records every change it is sent, answering
//! that it was applied (generation 8), and every configuration it is asked
//! to check, answering that it is valid. Its traffic counters grow with
//! each `GET /v1/stats` ([`growing_stats`]) so that the Statistics page has
//! rates to draw, and start over once as a restarted daemon's would.
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};

pub const STATS: &str = include_str!("../fixtures/stats.json");
pub const ACTIVE: &str = include_str!("../fixtures/status-active.json");
pub const STANDBY: &str = include_str!("../fixtures/status-standby.json");
pub const ALERTS: &str = include_str!("../fixtures/alerts.json");
pub const CONFIG: &str = include_str!("../fixtures/config.json");

type Asked = Arc<Mutex<Vec<(String, String, String)>>>;

pub struct FakeDaemon {
    socket: PathBuf,
    asked: Asked,
    /// The answer to `GET /v1/status` (see [`FakeDaemon::set_status`]).
    status: Arc<Mutex<&'static str>>,
    /// The answer to `GET /v1/alerts` (see [`FakeDaemon::set_alerts`]).
    alerts: Arc<Mutex<&'static str>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl FakeDaemon {
    /// Answers `GET /v1/status` with `status` (a fixture).
    pub fn start(status: &'static str) -> FakeDaemon {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("lb.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let asked: Asked = Default::default();
        let status = Arc::new(Mutex::new(status));
        let current = status.clone();
        let status_route = get(move || {
            let body = *current.lock().unwrap();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        });
        let alerts = Arc::new(Mutex::new(ALERTS));
        let current_alerts = alerts.clone();
        let alerts_route = get(move || {
            let body = *current_alerts.lock().unwrap();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        });
        let json = |body: &'static str| {
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], body) })
        };
        let record = {
            let asked = asked.clone();
            move |request: Request<Body>| {
                let asked = asked.clone();
                async move {
                    let method = request.method().to_string();
                    let path = request.uri().path().to_owned();
                    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
                        .await
                        .unwrap();
                    asked.lock().unwrap().push((
                        method,
                        path,
                        String::from_utf8_lossy(&body).into_owned(),
                    ));
                    let answer = if request_is_cluster(&asked) {
                        r#"{"accepted":"failover","message":"the group moves to lb2"}"#
                    } else if request_is_check(&asked) {
                        r#"{"valid":true,"cluster_changes":["cluster.auto_failback"]}"#
                    } else {
                        r#"{"generation":8}"#
                    };
                    ([(header::CONTENT_TYPE, "application/json")], answer).into_response()
                }
            }
        };
        let asked_stats = Arc::new(Mutex::new(0u64));
        let stats_route = get(move || {
            let body = {
                let mut n = asked_stats.lock().unwrap();
                *n += 1;
                growing_stats(*n)
            };
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        });
        let api = Router::new()
            .route("/v1/status", status_route)
            .route("/v1/stats", stats_route)
            .route("/v1/alerts", alerts_route)
            .route("/v1/config", json(CONFIG).put(record.clone()))
            .route("/v1/config/check", post(record.clone()))
            .route("/v1/changes", post(record.clone()))
            .route("/v1/cluster/{op}", post(record));
        let task = tokio::spawn(async move { axum::serve(listener, api).await.unwrap() });
        FakeDaemon {
            socket,
            asked,
            status,
            alerts,
            task,
            _dir: dir,
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Answers `GET /v1/alerts` with `alerts` (JSON, oldest first) from
    /// now on.
    pub fn set_alerts(&self, alerts: &'static str) {
        *self.alerts.lock().unwrap() = alerts;
    }

    /// Answers `GET /v1/status` with `status` from now on.
    pub fn set_status(&self, status: &'static str) {
        *self.status.lock().unwrap() = status;
    }

    /// Stops answering: the API's task ends and its socket goes.
    pub fn stop(&self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
    }

    /// The changes sent so far: method, path, body.
    pub fn asked(&self) -> Vec<(String, String, String)> {
        self.asked.lock().unwrap().clone()
    }
}

/// The answer to the `n`th `GET /v1/stats` (from 1): the fixture, with
/// the first service's and its backends' counters grown by an uneven
/// amount each time (60 % to the first backend), and from the 20th on
/// counted from 0 again (a restarted daemon).
pub fn growing_stats(n: u64) -> String {
    const STEPS: [u64; 8] = [300, 520, 410, 680, 350, 900, 760, 430];
    const RESTART: u64 = 20;
    let sum = |n: u64| (0..n).map(|i| STEPS[(i % 8) as usize]).sum::<u64>();
    let packets = if n >= RESTART {
        sum(n) - sum(RESTART)
    } else {
        48210 + sum(n)
    };
    let text =
        |[p, b, f]: [u64; 3]| format!(r#""traffic":{{"packets":{p},"bytes":{b},"new_flows":{f}}}"#);
    let counters = |p: u64| [p, p * 1100, p / 40];
    let mut out = STATS.to_owned();
    for (from, to) in [
        ([48210, 52428800, 1200], counters(packets)),
        ([30000, 31457280, 800], counters(packets * 6 / 10)),
        ([18210, 20971520, 400], counters(packets - packets * 6 / 10)),
    ] {
        out = out.replacen(&text(from), &text(to), 1);
    }
    out
}

fn request_is_cluster(asked: &Asked) -> bool {
    asked
        .lock()
        .unwrap()
        .last()
        .is_some_and(|(_, path, _)| path.starts_with("/v1/cluster/"))
}

fn request_is_check(asked: &Asked) -> bool {
    asked
        .lock()
        .unwrap()
        .last()
        .is_some_and(|(_, path, _)| path == "/v1/config/check")
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        self.task.abort();
    }
}
