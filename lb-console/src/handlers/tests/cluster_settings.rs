//! The cluster's settings over HTTP against the fake daemon: shown, the
//! draft validated (the exact check sent, the verdict at its field),
//! applied only after a confirmation (the exact configuration sent), the
//! refusals, a standby's read-only page, the audit trail.
use axum::http::{Method, StatusCode};

use super::{ACTIVE, CONFIG, Fake, STANDBY, assert_has, session};
use crate::tests::console;

/// The cluster settings' form as the page fills it from the fixture, with
/// `changes` replacing fields.
pub(super) fn settings_form(changes: &[(&str, &str)]) -> String {
    let mut fields = vec![
        ("heartbeat_interval_ms", "40"),
        ("heartbeat_lost_after", "5"),
        ("survivor", ""),
        ("max_failovers", "3"),
        ("failover_window_s", "3600"),
        ("final_action", "none"),
        ("np_targets", "198.18.0.254"),
        ("monitors[0].name", "uplink"),
        ("monitors[0].interval_ms", "1000"),
        ("monitors[0].timeout_ms", "1000"),
        ("monitors[0].retries", "1"),
        ("monitors[0].start_wait_ms", "0"),
        ("monitors[0].when", "always"),
        ("monitors[1].name", "backends-net"),
        ("monitors[1].interval_ms", "500"),
        ("monitors[1].timeout_ms", "400"),
        ("monitors[1].retries", "3"),
        ("monitors[1].start_wait_ms", "0"),
        ("monitors[1].when", "active"),
    ];
    for (field, value) in changes {
        match fields.iter_mut().find(|(f, _)| f == field) {
            Some(entry) => entry.1 = value,
            None => fields.push((field, value)),
        }
    }
    serde_urlencoded::to_string(&fields).unwrap()
}

#[tokio::test]
async fn the_cluster_settings_are_shown_and_edited_as_a_validated_draft() {
    let c = console();
    let fake = Fake::start(&c, ACTIVE);
    let (cookie, csrf) = session(&c).await;
    let reply = c.get("/cluster", Some(&cookie)).await;
    assert_has(
        &reply,
        &[
            "<dt>Heartbeat</dt><dd>every 40 ms; the peer is lost after 5 missed (200 ms)</dd>",
            "<dt>Automatic failback</dt><dd>off</dd>",
            "<dd>lb1 (the first server)</dd>",
            "<dd>3 monitor failovers in 3600 s, then final action <strong>none</strong></dd>",
            "<dd><code>198.18.0.254</code></dd>",
            r#"<td>backends-net <span class="sub">ip</span></td><td>ping 198.18.1.254</td><td>500 ms</td><td>400 ms</td><td>3</td><td>active</td>"#,
            r#"<a class="button" href="/cluster/settings">Edit settings</a>"#,
        ],
    );
    // The draft, filled with the daemon's settings.
    let reply = c.get("/cluster/settings", Some(&cookie)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_has(
        &reply,
        &[
            "Cluster settings (draft)",
            r#"id="heartbeat_interval_ms" name="heartbeat_interval_ms" inputmode="numeric" value="40">"#,
            r#"name="monitors[1].retries" inputmode="numeric" value="3">"#,
            r#"<option value="active" selected>active</option>"#,
            r#"name="np_targets" placeholder="none" value="198.18.0.254">"#,
            r#"name="action" value="validate">Validate</button>"#,
        ],
    );
    assert_eq!(fake.asked(), []);

    let post = |body: String| {
        let (c, cookie, csrf) = (&c, cookie.clone(), csrf.clone());
        async move {
            c.send(
                Method::POST,
                "/cluster/settings",
                Some(&cookie),
                &format!("csrf={csrf}&{body}"),
            )
            .await
        }
    };
    let edited = settings_form(&[("auto_failback", "yes"), ("max_failovers", "5")]);
    let mut want: lb_common::api::Config = serde_json::from_str(CONFIG).unwrap();
    let cluster = want.cluster.as_mut().unwrap();
    cluster.auto_failback = true;
    cluster.max_failovers = 5;

    // Validate: the daemon's verdict, the draft kept, nothing applied.
    let reply = post(format!("{edited}&action=validate")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_has(
        &reply,
        &[
            r#"<p class="notice" role="status">The draft is valid: auto_failback true max_failovers 5. Applying it, the cluster takes cluster.auto_failback, cluster.max_failovers live.</p>"#,
            r#"name="auto_failback" value="yes" checked>"#,
            r#"name="max_failovers" inputmode="numeric" value="5">"#,
        ],
    );
    let asked = fake.asked();
    assert_eq!(asked.len(), 1);
    assert_eq!(
        (asked[0].0.as_str(), asked[0].1.as_str()),
        ("POST", "/v1/config/check")
    );
    let sent: lb_common::api::Config = serde_json::from_str(&asked[0].2).unwrap();
    assert_eq!(sent, want);

    // The daemon's refusal at its field, the input kept.
    fake.answer_check(
        StatusCode::OK,
        r#"{"valid":false,"error":{"key":"cluster.monitors[1].retries","message":"cluster: monitor \"backends-net\": retries must be at least 1"}}"#,
    );
    let reply = post(format!(
        "{}&action=validate",
        settings_form(&[("monitors[1].retries", "0")])
    ))
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_has(
        &reply,
        &[
            r#"name="monitors[1].retries" inputmode="numeric" aria-invalid="true" value="0">"#,
            r#"id="monitors[1].retries-error">cluster: monitor &quot;backends-net&quot;: retries must be at least 1</p>"#,
        ],
    );
    // The console's own refusal: by the field, nothing sent.
    let before = fake.asked().len();
    let reply = post(format!(
        "{}&action=apply",
        settings_form(&[("max_failovers", "many"), ("auto_failback", "yes")])
    ))
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_has(
        &reply,
        &[
            r#"name="max_failovers" inputmode="numeric" aria-invalid="true" value="many">"#,
            r#"id="max_failovers-error">&quot;many&quot; is not a count of failovers (a whole number).</p>"#,
            r#"name="auto_failback" value="yes" checked>"#,
        ],
    );
    assert_eq!(fake.asked().len(), before);

    // Apply: validated, then a confirmation that carries the draft;
    // nothing applied yet.
    fake.answer_check(
        StatusCode::OK,
        r#"{"valid":true,"cluster_changes":["cluster.auto_failback","cluster.max_failovers"]}"#,
    );
    let reply = post(format!("{edited}&action=apply")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_has(
        &reply,
        &[
            "Apply these cluster settings?",
            "Changes: <code>auto_failback true max_failovers 5</code>",
            "The cluster takes cluster.auto_failback, cluster.max_failovers live, without moving the group, and the settings push takes them to the other node",
            r#"<input type="hidden" name="auto_failback" value="yes">"#,
            r#"<input type="hidden" name="monitors[1].when" value="active">"#,
            r#"<input type="hidden" name="confirm" value="yes">"#,
        ],
    );
    let asked: Vec<String> = fake
        .asked()
        .iter()
        .map(|(m, p, _)| format!("{m} {p}"))
        .collect();
    assert_eq!(asked.last().unwrap(), "POST /v1/config/check");
    assert!(!asked.iter().any(|a| a.starts_with("PUT")), "{asked:?}");

    // Confirmed: the configuration with the new settings, in the trail.
    let reply = post(format!("{edited}&action=apply&confirm=yes")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_has(
        &reply,
        &["The cluster settings are applied: the configuration is now generation 8."],
    );
    let (method, path, body) = fake.asked().pop().unwrap();
    assert_eq!((method.as_str(), path.as_str()), ("PUT", "/v1/config"));
    let sent: lb_common::api::Config = serde_json::from_str(&body).unwrap();
    assert_eq!(sent, want);
    // The daemon's refusal of an apply: shown on the draft, in the trail.
    let why = "cannot change while the daemon runs: cluster.heartbeat_interval_ms";
    fake.answer(StatusCode::BAD_REQUEST, &format!(r#"{{"error":"{why}"}}"#));
    let reply = post(format!(
        "{}&action=apply&confirm=yes",
        settings_form(&[("heartbeat_interval_ms", "100")])
    ))
    .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_has(
        &reply,
        &[
            &format!(r#"<p class="error" role="alert" id="cluster-error">{why}</p>"#),
            r#"name="heartbeat_interval_ms" inputmode="numeric" value="100">"#,
        ],
    );
    let trail: Vec<String> = c
        .audit()
        .iter()
        .filter(|e| e.action == "cluster settings")
        .map(|e| format!("{} | {}", e.detail, e.outcome))
        .collect();
    // A form the console refused: what was typed, and why.
    assert!(
        trail[0].contains(r#" max_failovers="many" "#)
            && trail[0].ends_with(
                r#"action="apply" | refused: max_failovers: "many" is not a count of failovers (a whole number)."#
            ),
        "{}",
        trail[0]
    );
    assert_eq!(
        trail[1..],
        [
            "auto_failback true max_failovers 5 | sent to the daemon".to_owned(),
            "auto_failback true max_failovers 5 | ok (generation 8)".to_owned(),
            "heartbeat_interval_ms 100 | sent to the daemon".to_owned(),
            format!("heartbeat_interval_ms 100 | refused: {why}"),
        ]
    );
}

#[tokio::test]
async fn a_standbys_cluster_settings_are_read_only() {
    let c = console();
    let fake = Fake::start(&c, STANDBY);
    let (cookie, csrf) = session(&c).await;
    let reply = c.get("/cluster", Some(&cookie)).await;
    assert_has(&reply, &["<dt>Automatic failback</dt><dd>off</dd>"]);
    assert!(!reply.body.contains("/cluster/settings"), "{}", reply.body);
    let reply = c.get("/cluster/settings", Some(&cookie)).await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert!(!reply.body.contains(r#"action="/cluster/settings""#));
    for action in ["validate", "apply", "apply&confirm=yes"] {
        let reply = c
            .send(
                Method::POST,
                "/cluster/settings",
                Some(&cookie),
                &format!("csrf={csrf}&{}&action={action}", settings_form(&[])),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CONFLICT, "{action}");
        assert_has(
            &reply,
            &["this node is the standby: change the cluster's settings on the active node"],
        );
    }
    assert_eq!(fake.asked(), []);
}
