//! The pages over HTTP against a fake daemon on a Unix socket: what each
//! shows of the daemon's answers (written out by hand as a daemon sends
//! them, in `tests/fixtures/`), the exact request each form sends, and the
//! refusals (no session, no CSRF token, bad input, the daemon's, a standby)
//! that change nothing.
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use axum::routing::get;
use axum::{Router, response::IntoResponse};
use tower::ServiceExt;

use crate::tests::{Console, Reply, console, console_of, csrf_of};

const STATS: &str = include_str!("../../../tests/fixtures/stats.json");
const ACTIVE: &str = include_str!("../../../tests/fixtures/status-active.json");
const STANDBY: &str = include_str!("../../../tests/fixtures/status-standby.json");
const ALERTS: &str = include_str!("../../../tests/fixtures/alerts.json");
const CONFIG: &str = include_str!("../../../tests/fixtures/config.json");

/// What the fake daemon was asked to change: method, path, body.
type Asked = Arc<Mutex<Vec<(String, String, String)>>>;

struct Fake {
    asked: Asked,
    /// The answer to `GET /v1/stats` (see [`Fake::set_stats`]).
    stats: Arc<Mutex<String>>,
    /// The answer to the next changes.
    answer: Arc<Mutex<(StatusCode, String)>>,
    /// The answer to the next `POST /v1/config/check`.
    check: Arc<Mutex<(StatusCode, String)>>,
    task: tokio::task::JoinHandle<()>,
}

impl Fake {
    fn start(c: &Console, status: &'static str) -> Fake {
        let listener = tokio::net::UnixListener::bind(&c.socket).unwrap();
        let asked: Asked = Default::default();
        let answer = Arc::new(Mutex::new((
            StatusCode::OK,
            r#"{"generation":8}"#.to_owned(),
        )));
        let json = |body: &'static str| {
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], body) })
        };
        let check = Arc::new(Mutex::new((
            StatusCode::OK,
            r#"{"valid":true,"cluster_changes":["cluster.auto_failback","cluster.max_failovers"]}"#
                .to_owned(),
        )));
        let (a, b) = (asked.clone(), answer.clone());
        let stats = Arc::new(Mutex::new(STATS.to_owned()));
        let current = stats.clone();
        let stats_route = get(move || {
            let body = current.lock().unwrap().clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        });
        let api = Router::new()
            .route("/v1/status", json(status))
            .route("/v1/stats", stats_route)
            .route("/v1/alerts", json(ALERTS))
            .route(
                "/v1/config",
                json(CONFIG).put(changed(a.clone(), b.clone())),
            )
            .route(
                "/v1/config/check",
                axum::routing::post(changed(a.clone(), check.clone())),
            )
            .route(
                "/v1/changes",
                axum::routing::post(changed(a.clone(), b.clone())),
            )
            .route(
                "/v1/cluster/{op}",
                axum::routing::post(changed(a.clone(), b.clone())),
            );
        let task = tokio::spawn(async move { axum::serve(listener, api).await.unwrap() });
        Fake {
            asked,
            stats,
            answer,
            check,
            task,
        }
    }

    /// Answers `GET /v1/stats` with `body` from now on.
    fn set_stats(&self, body: String) {
        *self.stats.lock().unwrap() = body;
    }

    fn answer(&self, status: StatusCode, body: &str) {
        *self.answer.lock().unwrap() = (status, body.to_owned());
    }

    fn answer_check(&self, status: StatusCode, body: &str) {
        *self.check.lock().unwrap() = (status, body.to_owned());
    }

    fn asked(&self) -> Vec<(String, String, String)> {
        self.asked.lock().unwrap().clone()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A handler that records the request and answers what the test set.
fn changed(
    asked: Asked,
    answer: Arc<Mutex<(StatusCode, String)>>,
) -> impl Fn(Request<Body>) -> std::pin::Pin<Box<dyn Future<Output = axum::response::Response> + Send>>
+ Clone
+ Send
+ Sync
+ 'static {
    move |request: Request<Body>| {
        let (asked, answer) = (asked.clone(), answer.clone());
        Box::pin(async move {
            let method = request.method().to_string();
            let path = request.uri().path().to_owned();
            let body = axum::body::to_bytes(request.into_body(), 1 << 20)
                .await
                .unwrap();
            asked
                .lock()
                .unwrap()
                .push((method, path, String::from_utf8(body.to_vec()).unwrap()));
            let (status, body) = answer.lock().unwrap().clone();
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        })
    }
}

/// Logs in; the cookie and the page's CSRF token.
async fn session(c: &Console) -> (String, String) {
    let cookie = c.login().await;
    let csrf = csrf_of(&c.get("/", Some(&cookie)).await.body);
    (cookie, csrf)
}

fn assert_has(reply: &Reply, wants: &[&str]) {
    for want in wants {
        assert!(
            reply.body.contains(want),
            "{want} missing from {}",
            reply.body
        );
    }
}

const SVC: &str = "service=tcp%2F198.18.0.100%3A80";

/// Every form of the LB page, with a valid body and the change it must
/// send (JSON written out here, as `lb-ctl` sends it).
fn lb_forms() -> Vec<(&'static str, String, &'static str)> {
    vec![
        (
            "/lb/backend/add",
            format!("{SVC}&address=198.18.1.13%3A80&weight=3&state=enabled"),
            r#"{"op":"add_backend","service":{"protocol":"tcp","vip":"198.18.0.100:80"},"backend":{"address":"198.18.1.13:80","weight":3,"state":"enabled"}}"#,
        ),
        (
            "/lb/backend/weight",
            format!("{SVC}&address=198.18.1.11%3A80&weight=5"),
            r#"{"op":"set_backend","service":{"protocol":"tcp","vip":"198.18.0.100:80"},"address":"198.18.1.11:80","weight":5}"#,
        ),
        (
            "/lb/backend/state",
            format!("{SVC}&address=198.18.1.11%3A80&state=drained"),
            r#"{"op":"set_backend","service":{"protocol":"tcp","vip":"198.18.0.100:80"},"address":"198.18.1.11:80","state":"drained"}"#,
        ),
        (
            "/lb/backend/delete",
            format!("{SVC}&address=198.18.1.12%3A80"),
            r#"{"op":"del_backend","service":{"protocol":"tcp","vip":"198.18.0.100:80"},"address":"198.18.1.12:80"}"#,
        ),
        (
            "/lb/service/add",
            "vip=198.18.0.101&port=443&protocol=tcp&mode=dsr&sorry=&name=tls".to_owned(),
            r#"{"op":"add_service","service":{"name":"tls","vip":"198.18.0.101","port":443,"protocol":"tcp","mode":"dsr","backends":[]}}"#,
        ),
        (
            "/lb/service/sorry",
            format!("{SVC}&sorry=198.18.1.98%3A80"),
            r#"{"op":"set_service","service":{"name":"web","vip":"198.18.0.100","port":80,"protocol":"tcp","mode":"nat","sorry":"198.18.1.98:80","health":{"kind":"http","path":"/healthz","expect_status":200,"interval_ms":1000,"timeout_ms":500,"rise":2,"fall":3},"backends":[]}}"#,
        ),
        (
            "/lb/service/health",
            format!(
                "{SVC}&kind=https&path=%2Fready&expect_status=204&body_contains=&host=www.example.com\
                 &verify_certificate=yes&interval_ms=3000&timeout_ms=2500&rise=1&fall=5"
            ),
            r#"{"op":"set_service","service":{"name":"web","vip":"198.18.0.100","port":80,"protocol":"tcp","mode":"nat","sorry":"198.18.1.99:80","health":{"kind":"https","path":"/ready","expect_status":204,"host":"www.example.com","verify_certificate":true,"interval_ms":3000,"timeout_ms":2500,"rise":1,"fall":5},"backends":[]}}"#,
        ),
        (
            "/lb/service/delete",
            "service=udp%2F%5B2001%3Adb8%3A%3A100%5D%3A53&confirm=yes".to_owned(),
            r#"{"op":"del_service","service":{"protocol":"udp","vip":"[2001:db8::100]:53"}}"#,
        ),
    ]
}

#[tokio::test]
async fn every_page_and_form_refuses_an_anonymous_request() {
    let c = console();
    let fake = Fake::start(&c, ACTIVE);
    for path in [
        "/lb",
        "/cluster",
        "/cluster/confirm/failover",
        "/cluster/settings",
        "/network",
        "/alerts",
        "/config",
        "/config/download",
    ] {
        let reply = c.get(path, None).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(reply.headers[header::LOCATION], "/login", "{path}");
    }
    let mut posts: Vec<(String, String)> = lb_forms()
        .into_iter()
        .map(|(path, form, _)| (path.to_owned(), form))
        .collect();
    for path in [
        "/cluster/failover",
        "/cluster/sync",
        "/cluster/settings",
        "/config/restore",
    ] {
        posts.push((path.to_owned(), "confirm=yes&csrf=x".to_owned()));
    }
    for (path, form) in posts {
        let reply = c.send(Method::POST, &path, None, &form).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    assert_eq!(fake.asked(), []);
}

#[tokio::test]
async fn the_lb_page_shows_services_backends_and_their_counters() {
    let c = console();
    let _fake = Fake::start(&c, ACTIVE);
    let (cookie, csrf) = session(&c).await;
    let reply = c.get("/lb", Some(&cookie)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_has(
        &reply,
        &[
            "<title>LB settings · ",
            r#"<a href="/lb" aria-current="page">LB settings</a>"#,
            "<code>tcp/198.18.0.100:80</code>",
            r#"<span class="sub">web</span>"#,
            r#"name="sorry" placeholder="none" value="198.18.1.99:80">"#,
            r#"<code class="address">198.18.1.12:80</code><span class="badge bad">down</span><span class="badge warn">drained</span><span class="badge warn" title="the next hop's link-layer address">neighbour unresolved</span>"#,
            "30000 packets · 30.0 MiB · 800 new flows",
            "<code>udp/[2001:db8::100]:53</code>",
            r#"<span class="badge bad">no usable backend</span>"#,
            r#"action="/lb/backend/add""#,
            r#"action="/lb/service/add""#,
            r#"<dt>forwarded</dt><dd>48210</dd>"#,
            &format!(r#"name="csrf" value="{csrf}""#),
            // The health check as the daemon's configuration holds it, and
            // its form filled with it.
            "<dt>Health check</dt><dd><strong>http</strong> GET <code>/healthz</code> → 200 · every 1000 ms, timeout 500 ms · up after 2, down after 3",
            "<dd>none (backends are always up)",
            r#"action="/lb/service/health""#,
            r#"<option value="http" selected>HTTP GET</option>"#,
            r#"id="health-path-tcp/198.18.0.100:80" name="path" placeholder="/" value="/healthz">"#,
            r#"id="health-interval_ms-tcp/198.18.0.100:80" name="interval_ms" placeholder="2000" inputmode="numeric" value="1000">"#,
        ],
    );
    // The form is closed until it is refused.
    assert!(!reply.body.contains("<details class=\"edit\" open"));
    // A drained backend is offered Enable and Disable, not Drain.
    let drained = reply.body.split("198.18.1.12:80</code>").nth(1).unwrap();
    let drained = drained.split("</li>").next().unwrap();
    assert!(drained.contains(r#"value="enabled">Enable<"#), "{drained}");
    assert!(!drained.contains(">Drain<"), "{drained}");
}

#[tokio::test]
async fn every_lb_form_sends_its_change_and_writes_the_audit_trail() {
    let c = console();
    let fake = Fake::start(&c, ACTIVE);
    let (cookie, csrf) = session(&c).await;
    for (path, form, want) in lb_forms() {
        let before = fake.asked().len();
        let reply = c
            .send(
                Method::POST,
                path,
                Some(&cookie),
                &format!("csrf={csrf}&{form}"),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::SEE_OTHER,
            "{path}: {}",
            reply.body
        );
        assert_eq!(reply.headers[header::LOCATION], "/lb?applied=8", "{path}");
        let asked = fake.asked();
        assert_eq!(asked.len(), before + 1, "{path}");
        assert_eq!(
            asked[before],
            ("POST".into(), "/v1/changes".into(), want.into()),
            "{path}"
        );
    }
    let reply = c.get("/lb?applied=8", Some(&cookie)).await;
    assert_has(
        &reply,
        &["The change is applied: the configuration is now generation 8."],
    );
    let trail: Vec<String> = c
        .audit()
        .iter()
        .filter(|e| e.action != "login")
        .map(|e| {
            assert_eq!(
                (e.user.as_str(), e.from),
                ("admin", "198.18.0.10".parse().unwrap())
            );
            format!("{} | {} | {}", e.action, e.detail, e.outcome)
        })
        .collect();
    assert_eq!(
        trail[..4],
        [
            "backend add | tcp/198.18.0.100:80 198.18.1.13:80 weight 3 enabled | sent to the daemon",
            "backend add | tcp/198.18.0.100:80 198.18.1.13:80 weight 3 enabled | ok (generation 8)",
            "backend set | tcp/198.18.0.100:80 198.18.1.11:80 weight 5 | sent to the daemon",
            "backend set | tcp/198.18.0.100:80 198.18.1.11:80 weight 5 | ok (generation 8)",
        ]
    );
    assert_eq!(trail.len(), 16);
}

#[tokio::test]
async fn deleting_a_service_asks_first() {
    let c = console();
    let fake = Fake::start(&c, ACTIVE);
    let (cookie, csrf) = session(&c).await;
    let reply = c
        .send(
            Method::POST,
            "/lb/service/delete",
            Some(&cookie),
            &format!("csrf={csrf}&{SVC}"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_has(
        &reply,
        &[
            "Delete service <code>tcp/198.18.0.100:80</code>?",
            r#"<input type="hidden" name="service" value="tcp/198.18.0.100:80"><input type="hidden" name="confirm" value="yes">"#,
        ],
    );
    assert_eq!(fake.asked(), []);
}

#[tokio::test]
async fn every_form_refuses_a_missing_or_wrong_csrf_token() {
    let c = console();
    let fake = Fake::start(&c, ACTIVE);
    let (cookie, csrf) = session(&c).await;
    let mut forms: Vec<(String, String)> = lb_forms()
        .into_iter()
        .map(|(path, form, _)| (path.to_owned(), form))
        .collect();
    for op in ["failover", "failback", "stop", "start"] {
        forms.push((format!("/cluster/{op}"), "confirm=yes".to_owned()));
    }
    forms.push(("/cluster/sync".to_owned(), "x=1".to_owned()));
    forms.push((
        "/cluster/settings".to_owned(),
        format!(
            "{}&action=apply&confirm=yes",
            cluster_settings::settings_form(&[])
        ),
    ));
    for (path, form) in forms {
        for token in [
            String::new(),
            "csrf=forged&".to_owned(),
            format!("csrf={}&", &csrf[1..]),
        ] {
            let reply = c
                .send(
                    Method::POST,
                    &path,
                    Some(&cookie),
                    &format!("{token}{form}"),
                )
                .await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path} {token}");
        }
    }
    assert_eq!(fake.asked(), []);
}

#[tokio::test]
async fn bad_input_is_refused_by_its_field_with_what_was_typed() {
    let c = console();
    let fake = Fake::start(&c, ACTIVE);
    let (cookie, csrf) = session(&c).await;
    let send = |path: &'static str, form: String| {
        let (c, cookie, csrf) = (&c, cookie.clone(), csrf.clone());
        async move {
            c.send(
                Method::POST,
                path,
                Some(&cookie),
                &format!("csrf={csrf}&{form}"),
            )
            .await
        }
    };
    let reply = send(
        "/lb/backend/weight",
        format!("{SVC}&address=198.18.1.11%3A80&weight=ten"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_has(
        &reply,
        &[
            r#"name="weight" inputmode="numeric" aria-invalid="true" value="ten">"#,
            r#"<p class="error field-error" role="alert" id="weight-error">&quot;ten&quot; is not a weight: a whole number, 0 or more.</p>"#,
        ],
    );
    let reply = send(
        "/lb/backend/add",
        format!("{SVC}&address=198.18.1.13&weight=2&state=drained"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_has(
        &reply,
        &[
            r#"value="198.18.1.13">"#,
            r#"<option value="drained" selected>drained</option>"#,
            "is not an address and port",
        ],
    );
    let reply = send(
        "/lb/service/add",
        "vip=198.18.0&port=443&protocol=tcp&mode=nat".into(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_has(
        &reply,
        &[
            r#"id="svc-vip" name="vip" placeholder="198.18.0.100" aria-invalid="true" value="198.18.0">"#,
            r#"value="443">"#,
            r#"id="vip-error">&quot;198.18.0&quot; is not an IP address"#,
        ],
    );
    // A health check: the field named, everything typed kept (the
    // kind, the checkbox), the form open.
    let reply = send(
        "/lb/service/health",
        format!(
            "{SVC}&kind=https&path=%2Fready&expect_status=204&verify_certificate=yes\
             &interval_ms=1000&timeout_ms=5000&rise=1&fall=2"
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_has(
        &reply,
        &[
            r#"<details class="edit" open>"#,
            r#"<option value="https" selected>HTTPS GET</option>"#,
            r#"name="path" placeholder="/" value="/ready">"#,
            r#"name="expect_status" placeholder="200" inputmode="numeric" value="204">"#,
            r#"name="verify_certificate" value="yes" checked>"#,
            r#"name="timeout_ms" placeholder="1000" inputmode="numeric" aria-invalid="true" value="5000">"#,
            r#"id="timeout_ms-error">timeout_ms is 5000; it must not be more than interval_ms (1000).</p>"#,
        ],
    );
    let reply = send(
        "/lb/service/health",
        format!("{SVC}&kind=gopher&interval_ms=1000&timeout_ms=500&rise=1&fall=2"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_has(
        &reply,
        &[
            r#"id="kind-error">&quot;gopher&quot; is not a kind of check (none, tcp, http, https or icmp).</p>"#,
        ],
    );
    assert_eq!(fake.asked(), [], "nothing reached the daemon");
    assert!(c.audit().iter().any(|e| {
        e.action == "service set"
            && e.outcome
                == "refused: timeout_ms: timeout_ms is 5000; it must not be more than interval_ms (1000)."
    }));
    assert!(c.audit().iter().any(|e| {
        e.outcome
            .starts_with("refused: weight: \"ten\" is not a weight")
    }),);

    // The daemon's refusal: by the field, the input kept, in the trail.
    let why =
        "service tcp/198.18.0.100:80: backend 198.18.1.11:80 has weight 20000; the most is 10000";
    fake.answer(StatusCode::BAD_REQUEST, &format!(r#"{{"error":"{why}"}}"#));
    let reply = send(
        "/lb/backend/weight",
        format!("{SVC}&address=198.18.1.11%3A80&weight=20000"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_has(
        &reply,
        &[
            r#"value="20000">"#,
            &format!(r#"id="weight-error">{why}</p>"#),
        ],
    );
    assert_eq!(fake.asked().len(), 1);
    let last = c.audit().pop().unwrap();
    assert_eq!(last.outcome, format!("refused: {why}"));
}

#[tokio::test]
async fn a_standby_is_read_only_and_links_to_the_active() {
    let c = console_of(
        Duration::from_secs(600),
        Some("https://198.18.0.1:50453/".into()),
    );
    let fake = Fake::start(&c, STANDBY);
    let (cookie, csrf) = session(&c).await;
    let reply = c.get("/lb", Some(&cookie)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_has(
        &reply,
        &[
            "Read-only: this node is the standby",
            "(<strong>lb1</strong>)",
            r#"<a href="https://198.18.0.1:50453/">Open the active node's console</a>"#,
            "198.18.1.12:80",
        ],
    );
    assert!(
        !reply.body.contains(r#"action="/lb/"#),
        "a form on a standby"
    );
    for (path, form, _) in lb_forms() {
        let reply = c
            .send(
                Method::POST,
                path,
                Some(&cookie),
                &format!("csrf={csrf}&{form}"),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CONFLICT, "{path}");
    }
    // Nor a restored configuration.
    let reply = pages::upload(&c, &cookie, &csrf, "lb.toml", &pages::backup_text()).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_has(
        &reply,
        &["This node is the standby: restore the configuration on the active node"],
    );
    assert_eq!(fake.asked(), []);
    assert!(c.audit().iter().any(|e| e.outcome
        == "refused: this node is the standby: change the settings on the active node"));
}

#[tokio::test]
async fn without_the_daemon_the_pages_say_unknown_and_offer_no_change() {
    let c = console();
    let (cookie, csrf) = session(&c).await;
    for path in ["/", "/lb", "/cluster", "/alerts"] {
        let reply = c.get(path, Some(&cookie)).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert!(
            reply
                .body
                .contains(r#"<span class="unknown">unknown</span>"#),
            "{path}"
        );
        assert!(
            reply.body.contains("cannot reach the lb-ctl daemon"),
            "{path}"
        );
        for never in [
            "badge ok",
            "action=\"/lb/",
            "Sync settings",
            ">active<",
            ">standby<",
        ] {
            assert!(!reply.body.contains(never), "{path}: {never}");
        }
    }
    let (path, form, _) = &lb_forms()[0];
    let reply = c
        .send(
            Method::POST,
            path,
            Some(&cookie),
            &format!("csrf={csrf}&{form}"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn the_network_page_needs_a_session_and_shows_this_namespaces_interfaces() {
    let c = console();
    let reply = c.get("/network", None).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.headers[header::LOCATION], "/login");
    assert!(!reply.body.contains("<code>lo</code>"));
    let cookie = c.login().await;
    let reply = c.get("/network", Some(&cookie)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body.contains("<title>Network · "), "{}", reply.body);
    // The test process's own namespace: its loopback, read for real.
    for want in [
        "<code>lo</code>",
        "<dt>MTU</dt><dd><div>65536</div>",
        r#"<span class="mono">127.0.0.1/8</span>"#,
        r#"<div class="sub">mask <span class="mono">255.0.0.0</span></div>"#,
    ] {
        assert!(
            reply.body.contains(want),
            "{want} missing from {}",
            reply.body
        );
    }
    // Reading the interfaces asks the kernel, not the daemon: nothing
    // listens on the daemon's socket here.
    assert!(!reply.body.contains(r#"class="unknown""#), "{}", reply.body);
}

mod cluster_settings;
mod network;
mod pages;
mod stats;
