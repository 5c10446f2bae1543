//! The console's test harness (a router on a temporary directory, a fake
//! daemon) and the tests of the router as a whole; the handlers' own tests
//! are in `handlers/tests/`.
use super::*;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{HeaderMap, Method, Request};
use std::time::Duration;
use tower::ServiceExt;

pub(crate) const PASSWORD: &str = "a long enough secret";

pub(crate) struct Console {
    pub(crate) router: Router,
    _dir: tempfile::TempDir,
    pub(crate) audit: std::path::PathBuf,
    /// The daemon's socket the console asks (nothing listens on it
    /// unless a test starts a [`fake_daemon`]).
    pub(crate) socket: std::path::PathBuf,
    /// The traffic history its Statistics page shows (tests sample
    /// into it with `traffic::sample`).
    pub(crate) traffic: traffic::Shared,
}

pub(crate) fn console_with(idle: Duration) -> Console {
    console_of(idle, None)
}

/// A console whose standby pages link to `peer_console`.
pub(crate) fn console_of(idle: Duration, peer_console: Option<String>) -> Console {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let socket = dir.path().join("lb.sock");
    let access = Arc::new(login::Access::with_sessions(
        auth::password::Credentials::new("admin", PASSWORD).unwrap(),
        auth::audit::AuditLog::new(&audit),
        auth::sessions::Sessions::new(idle, Duration::from_secs(3600), 8),
    ));
    let traffic: traffic::Shared = Default::default();
    let router = router_with(
        "node-1.example",
        access,
        Client::new(&socket),
        peer_console,
        traffic.clone(),
    )
    .layer(MockConnectInfo(SocketAddr::from(([198, 18, 0, 10], 40000))));
    Console {
        router,
        _dir: dir,
        audit,
        socket,
        traffic,
    }
}

/// A daemon's API on `socket` that answers `GET /v1/status` with
/// `status` and `body` (JSON written out here as a daemon sends it, not
/// made by the types under test).
/// The fake daemon's alerts, oldest first as the daemon sends them.
const ALERTS: &str = r#"[{"time":"2026-11-25T14:50:01Z","level":"info","event":"daemon_started","message":"lb-ctl 0.1.0 started"},{"time":"2026-11-25T14:52:13Z","level":"warning","event":"backend_down","message":"backend 198.18.1.12:80 is down"}]"#;

fn fake_daemon(
    socket: &std::path::Path,
    status: StatusCode,
    body: &'static str,
) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::UnixListener::bind(socket).unwrap();
    let api =
        Router::new()
            .route(
                "/v1/status",
                get(move || async move {
                    (status, [(header::CONTENT_TYPE, "application/json")], body)
                }),
            )
            .route(
                "/v1/alerts",
                get(move || async move {
                    (status, [(header::CONTENT_TYPE, "application/json")], ALERTS)
                }),
            );
    tokio::spawn(async move { axum::serve(listener, api).await.unwrap() })
}

pub(crate) fn console() -> Console {
    console_with(Duration::from_secs(600))
}

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Console {
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        cookie: Option<&str>,
        form: &str,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, format!("{}={cookie}", login::COOKIE));
        }
        if !form.is_empty() {
            request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        let response = self
            .router
            .clone()
            .oneshot(request.body(Body::from(form.to_owned())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        Reply {
            status,
            headers,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    }

    pub(crate) async fn get(&self, path: &str, cookie: Option<&str>) -> Reply {
        self.send(Method::GET, path, cookie, "").await
    }

    /// Logs in; the session cookie's value.
    pub(crate) async fn login(&self) -> String {
        let reply = self
            .send(
                Method::POST,
                "/login",
                None,
                &format!("user=admin&password={}", PASSWORD.replace(' ', "+")),
            )
            .await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
        assert_eq!(reply.headers[header::LOCATION], "/");
        let cookie = reply.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .to_owned();
        for attribute in [
            "Secure",
            "HttpOnly",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=",
        ] {
            assert!(cookie.contains(attribute), "{cookie}");
        }
        cookie
            .strip_prefix(&format!("{}=", login::COOKIE))
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned()
    }

    pub(crate) fn audit(&self) -> Vec<auth::audit::AuditEntry> {
        auth::audit::AuditLog::new(&self.audit).recent(100).unwrap()
    }
}

pub(crate) fn csrf_of(page: &str) -> String {
    page.split(r#"name="csrf" value=""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned()
}

fn assert_security_headers(headers: &HeaderMap) {
    let h = |name: header::HeaderName| {
        headers
            .get(&name)
            .unwrap_or_else(|| panic!("missing {name}"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert!(h(header::STRICT_TRANSPORT_SECURITY).starts_with("max-age="));
    assert_eq!(h(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    assert_eq!(h(header::X_FRAME_OPTIONS), "DENY");
    let csp = h(header::CONTENT_SECURITY_POLICY);
    assert!(
        csp.starts_with("default-src 'none'; style-src 'unsafe-inline'"),
        "{csp}"
    );
}

#[tokio::test]
async fn anonymous_requests_get_the_login_page_or_401() {
    let c = console();
    for path in ["/", "/anything", "/logout"] {
        let reply = c.get(path, None).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(reply.headers[header::LOCATION], "/login", "{path}");
        assert_security_headers(&reply.headers);
    }
    let reply = c.send(Method::POST, "/logout", None, "csrf=x").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let reply = c.get("/", Some("forged-token")).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let reply = c.get("/login", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.headers[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    assert!(
        reply
            .body
            .contains(r#"<form class="stack" method="post" action="/login">"#)
    );
    assert!(!reply.body.contains("<script"));
    assert_security_headers(&reply.headers);
}

#[tokio::test]
async fn a_login_opens_a_session_whose_page_carries_its_csrf_token() {
    let c = console();
    let cookie = c.login().await;
    let reply = c.get("/", Some(&cookie)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body.contains("<title>Dashboard · "));
    assert!(reply.body.contains(&format!("lb {VERSION}")));
    assert!(reply.body.contains("node-1.example"));
    assert_eq!(csrf_of(&reply.body).len(), 64);
    assert_security_headers(&reply.headers);
    // The login page sends a logged-in browser on.
    let reply = c.get("/login", Some(&cookie)).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let audit = c.audit();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (
            audit[0].action.as_str(),
            audit[0].outcome.as_str(),
            audit[0].from
        ),
        ("login", "ok", "198.18.0.10".parse().unwrap())
    );
}

#[tokio::test]
async fn a_wrong_password_is_refused_and_keeps_the_user_name() {
    let c = console();
    for form in [
        "user=admin&password=wrong+password",
        "user=root&password=a+long+enough+secret",
        "user=admin",
        "garbage=%%%",
    ] {
        let reply = c.send(Method::POST, "/login", None, form).await;
        assert!(
            matches!(
                reply.status,
                StatusCode::UNAUTHORIZED | StatusCode::BAD_REQUEST
            ),
            "{form}: {}",
            reply.status
        );
        assert!(reply.headers.get(header::SET_COOKIE).is_none(), "{form}");
    }
    let reply = c
        .send(Method::POST, "/login", None, "user=admin&password=nope")
        .await;
    assert!(reply.body.contains("Wrong user name or password."));
    assert!(reply.body.contains(r#"value="admin""#));
    assert!(
        c.audit()
            .iter()
            .any(|e| e.outcome == "refused: wrong user name or password")
    );
}

#[tokio::test]
async fn after_five_failures_logins_wait_even_with_the_right_password() {
    let c = console();
    for _ in 0..auth::throttle::FREE_FAILURES {
        let reply = c
            .send(Method::POST, "/login", None, "user=admin&password=wrong")
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let right = format!("user=admin&password={}", PASSWORD.replace(' ', "+"));
    let reply = c.send(Method::POST, "/login", None, &right).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.headers[header::RETRY_AFTER], "30");
    assert!(reply.headers.get(header::SET_COOKIE).is_none());
    assert!(reply.body.contains("Too many failed logins"));
}

#[tokio::test]
async fn a_change_without_the_sessions_csrf_token_is_refused() {
    let c = console();
    let cookie = c.login().await;
    let csrf = csrf_of(&c.get("/", Some(&cookie)).await.body);
    for form in [
        String::new(),
        "csrf=wrong".to_owned(),
        format!("csrf={}", &csrf[1..]),
    ] {
        let reply = c.send(Method::POST, "/logout", Some(&cookie), &form).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{form:?}");
        assert!(reply.body.contains("security token"), "{}", reply.body);
    }
    // Still logged in: nothing happened.
    assert_eq!(c.get("/", Some(&cookie)).await.status, StatusCode::OK);
    let reply = c
        .send(
            Method::POST,
            "/logout",
            Some(&cookie),
            &format!("csrf={csrf}"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.headers[header::LOCATION], "/login");
    assert!(
        reply.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        c.get("/", Some(&cookie)).await.status,
        StatusCode::SEE_OTHER
    );
    let outcomes: Vec<String> = c
        .audit()
        .iter()
        .map(|e| format!("{} {}", e.action, e.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            "login ok",
            "POST /logout refused: missing or wrong CSRF token",
            "POST /logout refused: missing or wrong CSRF token",
            "POST /logout refused: missing or wrong CSRF token",
            "logout ok"
        ]
    );
}

#[tokio::test]
async fn an_idle_session_expires() {
    let c = console_with(Duration::from_millis(300));
    let cookie = c.login().await;
    assert_eq!(c.get("/", Some(&cookie)).await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        c.get("/", Some(&cookie)).await.status,
        StatusCode::SEE_OTHER
    );
}

/// What `lb-ctl run` answers at `GET /v1/status` (a standby, so that
/// the role cannot be a default).
const STATUS: &str = r#"{"node":"lb1","version":"0.1.0","role":"standby","generation":7,"uptime_seconds":3720,"interfaces":["ext0","int0"],"xdp_mode":"native","adopted":false,"services":2,"backends":5,"backends_down":1,"neighbours_unresolved":0,"config_file":"/etc/lb/lb.toml"}"#;

#[tokio::test]
async fn the_dashboard_shows_what_the_daemon_answers() {
    let c = console();
    let daemon = fake_daemon(&c.socket, StatusCode::OK, STATUS);
    let cookie = c.login().await;
    let reply = c.get("/", Some(&cookie)).await;
    assert_eq!(reply.status, StatusCode::OK);
    for want in [
        r#"<dt>Daemon</dt><dd data-live="daemon">running, lb 0.1.0</dd>"#,
        r#"<dt>Node</dt><dd data-live="node">lb1</dd>"#,
        r#"<dt>Role</dt><dd data-live="role">standby</dd>"#,
        r#"<dt>Uptime</dt><dd data-live="uptime">1 h 2 min</dd>"#,
        r#"<dt>Configuration</dt><dd data-live="configuration">generation 7</dd>"#,
        r#"<dt>Services</dt><dd data-live="services">2 (5 backends, 1 down)</dd>"#,
    ] {
        assert!(
            reply.body.contains(want),
            "{want} missing from {}",
            reply.body
        );
    }
    daemon.abort();
}

#[tokio::test]
async fn without_an_answer_the_daemon_is_unknown_with_the_reason() {
    let c = console();
    let cookie = c.login().await;
    // Nothing listens on the socket.
    let reply = c.get("/", Some(&cookie)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let unknown = r#"><span class="unknown">unknown</span></dd>"#;
    for want in [
        format!(r#"<dt>Daemon</dt><dd data-live="daemon"{unknown}"#),
        format!(r#"<dt>Role</dt><dd data-live="role"{unknown}"#),
        format!("cannot reach the lb-ctl daemon at {}", c.socket.display()),
    ] {
        assert!(
            reply.body.contains(&want),
            "{want} missing from {}",
            reply.body
        );
    }
    for never in [">active</dd>", ">standby</dd>", ">running"] {
        assert!(!reply.body.contains(never), "{never} in {}", reply.body);
    }
    // A daemon whose loop does not answer: its API says so (503).
    let daemon = fake_daemon(
        &c.socket,
        StatusCode::SERVICE_UNAVAILABLE,
        r#"{"error":"the daemon's event loop did not answer within 5 s"}"#,
    );
    let reply = c.get("/", Some(&cookie)).await;
    assert!(
        reply
            .body
            .contains(&format!(r#"<dt>Role</dt><dd data-live="role"{unknown}"#))
    );
    assert!(
        reply
            .body
            .contains("the daemon's event loop did not answer within 5 s"),
        "{}",
        reply.body
    );
    daemon.abort();
}

#[tokio::test]
async fn the_live_values_need_a_session_and_say_what_the_daemon_answers() {
    let c = console();
    for path in ["/live/status", "/live.js"] {
        let reply = c.get(path, None).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(reply.headers[header::LOCATION], "/login", "{path}");
        assert!(!reply.body.contains("generation"), "{path}");
    }
    let cookie = c.login().await;
    // The dashboard loads the script, which the policy allows.
    let page = c.get("/", Some(&cookie)).await;
    assert!(
        page.body
            .contains(r#"<script src="/live.js" defer></script>"#)
    );
    assert!(
        page.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("script-src 'self'; connect-src 'self'")
    );
    let script = c.get("/live.js", Some(&cookie)).await;
    assert_eq!(script.status, StatusCode::OK);
    assert_eq!(
        script.headers[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    assert!(script.body.contains(r#"fetch("/live/status""#));

    let daemon = fake_daemon(&c.socket, StatusCode::OK, STATUS);
    let reply = c.get("/live/status", Some(&cookie)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(
        reply.body,
        r#"{"values":{"configuration":"generation 7","daemon":"running, lb 0.1.0","group_runs_on":null,"interconnects":null,"node":"lb1","peer":null,"replication":null,"role":"standby","services":"2 (5 backends, 1 down)","settings":null,"takeovers":null,"uptime":"1 h 2 min"},"error":null,"alerts":[{"time":"2026-11-25T14:52:13Z","level":"warning","event":"backend_down","message":"backend 198.18.1.12:80 is down"},{"time":"2026-11-25T14:50:01Z","level":"info","event":"daemon_started","message":"lb-ctl 0.1.0 started"}]}"#
    );
    daemon.abort();
    // The daemon down: every value unknown (null), with why.
    std::fs::remove_file(&c.socket).unwrap();
    let reply = c.get("/live/status", Some(&cookie)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let live: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(
        live["values"],
        serde_json::json!({"configuration":null,"daemon":null,"node":null,"role":null,"services":null,"uptime":null,
            "group_runs_on":null,"peer":null,"interconnects":null,"settings":null,"takeovers":null,"replication":null})
    );
    assert_eq!(live["alerts"], serde_json::Value::Null);
    assert!(
        live["error"]
            .as_str()
            .unwrap()
            .contains("cannot reach the lb-ctl daemon"),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn healthz_needs_no_login() {
    let reply = console().get("/healthz", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.headers[header::CONTENT_TYPE],
        "text/plain; charset=utf-8"
    );
    assert_eq!(reply.body, "ok");
    assert_security_headers(&reply.headers);
}

#[tokio::test]
async fn unknown_path_is_404_html_once_logged_in() {
    let c = console();
    let cookie = c.login().await;
    let reply = c.get("/admin/%3Cx%3E", Some(&cookie)).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.body.contains("Page not found"));
    assert!(reply.body.contains("/admin/%3Cx%3E"));
    assert_security_headers(&reply.headers);
}

#[test]
fn hostname_is_not_empty() {
    assert!(!hostname().is_empty());
}
