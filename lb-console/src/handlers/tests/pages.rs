//! The Cluster page, the dashboard, the alerts and the backup.
use super::*;

#[tokio::test]
async fn the_cluster_page_shows_the_pair_and_operations_need_a_confirmation() {
    let c = console();
    let fake = Fake::start(&c, ACTIVE);
    let (cookie, csrf) = session(&c).await;
    let reply = c.get("/cluster", Some(&cookie)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_has(
        &reply,
        &[
            r#"<dt>lb1 (this server)</dt><dd><span class="badge ok">active</span> since 2026-11-25 14:54:05 UTC</dd>"#,
            r#"<dt>lb2</dt><dd><span class="badge">standby</span></dd>"#,
            "<dt>Runs on</dt><dd><strong>lb1</strong></dd>",
            "<dd>2, last 2026-11-25 14:54:05 UTC</dd>",
            r#"<dt>hb1</dt><dd><span class="badge bad">peer not heard</span></dd>"#,
            r#"<tr><td>backends-net</td><td><span class="badge bad">Error</span></td><td><span class="unknown">unknown</span></td></tr>"#,
            r#"<tr><td>uplink</td><td><span class="badge ok">Normal</span></td><td><span class="badge ok">Normal</span></td></tr>"#,
            "generation 7 · 9f2c41d0",
            "generation 6 · 77ab0e12",
            "the peer did not answer within 2 s",
            "2 messages · 17 flows · 4 ms",
            r#"href="/cluster/confirm/failover""#,
            r#"action="/cluster/sync""#,
        ],
    );
    let reply = c.get("/cluster/confirm/failover", Some(&cookie)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_has(&reply, &["Fail over?", r#"action="/cluster/failover""#]);
    assert_eq!(
        c.get("/cluster/confirm/explode", Some(&cookie))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Without the confirmation: the confirmation page again, nothing done.
    let reply = c
        .send(
            Method::POST,
            "/cluster/failover",
            Some(&cookie),
            &format!("csrf={csrf}"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(fake.asked(), []);
    // Without the token: refused.
    let reply = c
        .send(
            Method::POST,
            "/cluster/failover",
            Some(&cookie),
            "confirm=yes",
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(fake.asked(), []);

    fake.answer(
        StatusCode::OK,
        r#"{"accepted":"failover","message":"the group moves to lb2"}"#,
    );
    let reply = c
        .send(
            Method::POST,
            "/cluster/failover",
            Some(&cookie),
            &format!("csrf={csrf}&confirm=yes"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_has(&reply, &[r#"role="status">the group moves to lb2</p>"#]);
    fake.answer(
        StatusCode::CONFLICT,
        r#"{"error":"the peer is not eligible: it has not caught up"}"#,
    );
    let reply = c
        .send(
            Method::POST,
            "/cluster/failback",
            Some(&cookie),
            &format!("csrf={csrf}&confirm=yes"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_has(&reply, &["the peer is not eligible: it has not caught up"]);
    fake.answer(StatusCode::OK, r#"{"synchronized":"generation 7"}"#);
    let reply = c
        .send(
            Method::POST,
            "/cluster/sync",
            Some(&cookie),
            &format!("csrf={csrf}"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_has(&reply, &["Settings synchronized: generation 7"]);
    let asked: Vec<String> = fake
        .asked()
        .into_iter()
        .map(|(m, p, _)| format!("{m} {p}"))
        .collect();
    assert_eq!(
        asked,
        [
            "POST /v1/cluster/failover",
            "POST /v1/cluster/failback",
            "POST /v1/cluster/sync"
        ]
    );
    let trail: Vec<String> = c
        .audit()
        .iter()
        .filter(|e| e.action.starts_with("cluster"))
        .map(|e| format!("{} | {}", e.action, e.outcome))
        .collect();
    assert_eq!(
        trail,
        [
            "cluster failover | refused: not confirmed",
            "cluster failover | sent to the daemon",
            "cluster failover | ok",
            "cluster failback | sent to the daemon",
            "cluster failback | refused: the peer is not eligible: it has not caught up",
            "cluster sync | sent to the daemon",
            "cluster sync | ok",
        ]
    );
}

#[tokio::test]
async fn the_dashboard_shows_the_pair_and_the_recent_alerts() {
    let c = console();
    let _fake = Fake::start(&c, ACTIVE);
    let (cookie, _) = session(&c).await;
    let reply = c.get("/", Some(&cookie)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_has(
        &reply,
        &[
            r#"<dt>Group runs on</dt><dd data-live="group_runs_on">lb1</dd>"#,
            r#"<dt>lb2</dt><dd data-live="peer">standby</dd>"#,
            r#"<dd data-live="interconnects">1 of 2 hear the peer</dd>"#,
            r#"<dd data-live="settings">generation 7 here, generation 6 on lb2</dd>"#,
            r#"<dd data-live="replication">sending, caught up, lag 17 flows</dd>"#,
            r#"<span class="badge bad">error</span><code>no_usable_backend</code>"#,
            r#"<a href="/alerts">All alerts</a>"#,
        ],
    );
    // The same values, live.
    let reply = c.get("/live/status", Some(&cookie)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let live: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(
        live,
        serde_json::json!({
            "values": {
                "daemon": "running, lb 0.1.0",
                "node": "lb1",
                "role": "active",
                "uptime": "1 h 2 min",
                "configuration": "generation 7",
                "services": "2 (2 backends, 1 down)",
                "group_runs_on": "lb1",
                "peer": "standby",
                "interconnects": "1 of 2 hear the peer",
                "settings": "generation 7 here, generation 6 on lb2",
                "takeovers": "2",
                "replication": "sending, caught up, lag 17 flows",
            },
            "error": null,
            // The recent alerts too, newest first, as the page lists them.
            "alerts": [
                {"time": "2026-11-25T14:54:05Z", "level": "error", "event": "no_usable_backend",
                 "message": "udp/[2001:db8::100]:53 has no usable backend; new flows are dropped"},
                {"time": "2026-11-25T14:52:13Z", "level": "warning", "event": "backend_down",
                 "message": "tcp/198.18.0.100:80: backend 198.18.1.12:80 is down (3 probes failed: connection refused)"},
                {"time": "2026-11-25T14:50:01Z", "level": "info", "event": "daemon_started",
                 "message": "lb-ctl 0.1.0 started on ext0, int0 (native XDP)"},
            ],
        }),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn the_alerts_page_lists_the_newest_first() {
    let c = console();
    let _fake = Fake::start(&c, ACTIVE);
    let (cookie, _) = session(&c).await;
    let reply = c.get("/alerts", Some(&cookie)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let newest = reply.body.find("no_usable_backend").unwrap();
    let oldest = reply.body.find("daemon_started").unwrap();
    assert!(newest < oldest);
    assert_has(
        &reply,
        &[r#"<span class="badge warn">warning</span><code>backend_down</code>"#],
    );
}

/// The fixture configuration as a backup file.
pub(super) fn backup_text() -> String {
    let config: lb_common::api::Config = serde_json::from_str(CONFIG).unwrap();
    crate::handlers::config::to_toml(&config).unwrap()
}

/// A browser's upload of `file` named `name`.
pub(super) async fn upload(c: &Console, cookie: &str, csrf: &str, name: &str, file: &str) -> Reply {
    let boundary = "----lbtestboundary7";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n{file}\r\n--{boundary}--\r\n"
    );
    let request = Request::builder()
        .method(Method::POST)
        .uri("/config/restore")
        .header(header::COOKIE, format!("{}={cookie}", crate::login::COOKIE))
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(body))
        .unwrap();
    let response = c.router.clone().oneshot(request).await.unwrap();
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

#[tokio::test]
async fn the_configuration_downloads_as_toml_and_a_restore_is_checked_first() {
    let c = console();
    let fake = Fake::start(&c, ACTIVE);
    let (cookie, csrf) = session(&c).await;
    let reply = c.get("/config/download", Some(&cookie)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.headers[header::CONTENT_DISPOSITION],
        "attachment; filename=\"lb-lb1-generation-7.toml\""
    );
    let config: lb_common::api::Config = toml::from_str(&reply.body).unwrap();
    assert_eq!(config, serde_json::from_str(CONFIG).unwrap());
    let backup = reply.body;

    // A file that is not a configuration: refused with where and why.
    let reply = upload(
        &c,
        &cookie,
        &csrf,
        "bad.toml",
        "[node]\nname = \"lb1\"\nnope = 3\n",
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_has(
        &reply,
        &[
            "The file <code>bad.toml</code> was refused; nothing was changed.",
            "line 3, column 1: unknown field `nope`",
        ],
    );
    let other = backup.replace("name = \"lb1\"", "name = \"lb2\"");
    let reply = upload(&c, &cookie, &csrf, "lb2.toml", &other).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_has(
        &reply,
        &["This file is the configuration of node &quot;lb2&quot;; this node is &quot;lb1&quot;."],
    );
    let reply = upload(&c, &cookie, &csrf, "empty.toml", "").await;
    assert_has(&reply, &["The file is empty"]);
    // Without the token (a forged one): refused before anything.
    let reply = upload(&c, &cookie, "forged", "lb.toml", &backup).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(fake.asked(), []);

    // The daemon's refusal is shown; then a good file goes through.
    fake.answer(
        StatusCode::BAD_REQUEST,
        r#"{"error":"services[0].backends[1]: weight 20000 is above 10000"}"#,
    );
    let reply = upload(&c, &cookie, &csrf, "lb.toml", &backup).await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_has(
        &reply,
        &["services[0].backends[1]: weight 20000 is above 10000"],
    );
    fake.answer(StatusCode::OK, r#"{"generation":8}"#);
    let reply = upload(&c, &cookie, &csrf, "lb.toml", &backup).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_has(
        &reply,
        &["Restored <code>lb.toml</code>: the configuration is now generation 8."],
    );
    let asked = fake.asked();
    assert_eq!(asked.len(), 2);
    assert_eq!(
        (asked[1].0.as_str(), asked[1].1.as_str()),
        ("PUT", "/v1/config")
    );
    let sent: lb_common::api::Config = serde_json::from_str(&asked[1].2).unwrap();
    assert_eq!(sent, config);
    assert!(c.audit().iter().any(|e| e.action == "config restore"
        && e.detail == "lb.toml (node lb1, generation 7)"
        && e.outcome == "ok (generation 8)"));
}
