//! The console against a REAL daemon: the rig (client, LB node, backends
//! with nginx) and `lb-ctl run` in the LB's namespace (the harness of
//! `lb_tests::daemon`), the real `lb-console` pointed at its socket, driven
//! in chromium: the dashboard shows what `lb-ctl status --json` says (node,
//! role, generation, services), and follows a change made with the CLI
//! without a reload; a backend added through the LB settings form shows in
//! `lb-ctl backend list` and takes new connections through the VIP; drained
//! through the form, it takes no new ones; the service's health check
//! changed through its form shows in `lb-ctl config export` and runs (an
//! HTTP check of a missing page takes every backend down). Needs root, chromium and
//! chromium-driver (`cargo xtask setup`) and the `lb-ctl` binary built
//! beside `lb-console` (`cargo build -p lb-ctl`; `cargo xtask test` builds
//! it): it fails, never skips, without them.

#[allow(dead_code)]
mod support;

use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use lb_tests::daemon::{DaemonProcess, NodeFiles};
use lb_tests::rig::{Rig, RigOptions, VIP_V4};
use serde_json::Value;
use support::browser::Browser;
use support::console::Console;
use support::lb_ctl;

const SERVICE: &str = "tcp/198.18.0.100:80";
/// New connections through the VIP per look at where they went (bounded).
const TRIES: usize = 30;

/// One service on the VIP over the first backend, TCP health checks.
fn write_config(rig: &Rig, files: &NodeFiles) -> PathBuf {
    let mut text = files.node_table("lb-console-test", &["ext0", "int0"], None);
    text.push_str(&format!(
        "\n[[services]]\nvip = \"{VIP_V4}\"\nport = 80\nprotocol = \"tcp\"\n\
         health = {{ kind = \"tcp\", interval_ms = 300, timeout_ms = 300, rise = 2, fall = 2 }}\n\
         \n[[services.backends]]\naddress = \"{}:80\"\n",
        rig.backends[0].v4
    ));
    let path = files.config();
    std::fs::write(&path, text).unwrap();
    path
}

/// The backend `address` as `lb-ctl backend list --json` shows it.
fn listed(daemon: &DaemonProcess, address: &str) -> Option<Value> {
    let list: Value = serde_json::from_str(
        &daemon
            .ctl_ok(&["backend", "list", SERVICE, "--json"])
            .unwrap(),
    )
    .unwrap();
    list[0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["address"] == address)
        .cloned()
}

/// Which backends answered `TRIES` new connections through the VIP.
fn answers(rig: &Rig) -> Vec<String> {
    (0..TRIES)
        .map(|_| {
            rig.curl(&format!("http://{VIP_V4}/"))
                .unwrap()
                .trim()
                .to_owned()
        })
        .collect()
}

/// The dashboard's node, role, configuration and services values.
async fn dashboard(browser: &Browser) -> [String; 4] {
    let mut shown = [const { String::new() }; 4];
    for (value, key) in shown
        .iter_mut()
        .zip(["node", "role", "configuration", "services"])
    {
        *value = browser.text(&format!("[data-live={key}]")).await;
    }
    shown
}

/// What the dashboard should show for `lb-ctl --json status`.
fn expected(status: &Value) -> [String; 4] {
    [
        status["node"].as_str().unwrap().to_owned(),
        status["role"].as_str().unwrap().to_owned(),
        format!("generation {}", status["generation"]),
        format!(
            "{} ({} backends, {} down)",
            status["services"], status["backends"], status["backends_down"]
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_added_and_drained_through_the_console_reaches_the_real_daemon() {
    let bin = lb_ctl();
    let mut rig = Rig::build(&RigOptions {
        backends: 2,
        ..Default::default()
    })
    .unwrap();
    rig.add_vips().unwrap();
    rig.start_nginx().unwrap();
    let files = NodeFiles::in_rig(&rig);
    let config = write_config(&rig, &files);
    let daemon = DaemonProcess::start(&rig.lb().ns, &bin, files.clone(), &config).unwrap();
    let console = Console::start_with(&[OsStr::new("--socket"), files.socket().as_os_str()]);
    let browser = Browser::start(console.spki()).await;
    console.log_in(&browser).await;

    // The dashboard says what `lb-ctl status --json` says.
    let status = daemon.status_json().expect("lb-ctl --json status");
    assert_eq!(dashboard(&browser).await, expected(&status));

    let (first, second) = (&rig.backends[0], &rig.backends[1]);
    let added = format!("{}:80", second.v4);
    browser.goto(&console.url("/lb")).await;
    let main = browser.text("main").await;
    assert!(main.contains(SERVICE), "{main}");
    assert!(main.contains(&format!("{}:80", first.v4)), "{main}");
    assert!(!main.contains(&added), "{main}");

    // Add the second backend through the form.
    let add = "form[action='/lb/backend/add']";
    browser
        .fill(&format!("{add} input[name=address]"), &added)
        .await;
    browser.click_and_wait(&format!("{add} button")).await;
    assert!(
        browser
            .text("[role=status]")
            .await
            .contains("The change is applied"),
        "{}",
        browser.text("main").await
    );
    assert!(browser.text("main").await.contains(&added));
    let backend = listed(&daemon, &added).expect("the added backend in lb-ctl backend list");
    assert_eq!(
        (backend["weight"].as_u64(), backend["state"].as_str()),
        (Some(1), Some("enabled"))
    );

    // Once its health check passes it takes new connections.
    let deadline = Instant::now() + Duration::from_secs(15);
    while listed(&daemon, &added).unwrap()["health"] != "up" {
        assert!(Instant::now() < deadline, "{added} never came up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = answers(&rig);
    assert!(seen.contains(&second.name), "{added} took none of {seen:?}");

    // Drain it through the form: no new connections go to it.
    browser.goto(&console.url("/lb")).await;
    let rows = browser.count("li.backend").await;
    assert_eq!(rows, 2);
    browser
        .script(&format!(
            "document.querySelectorAll('li.backend').forEach(li => {{ \
               if (li.querySelector('code.address').textContent === '{added}') li.id = 'added'; }}); \
             return null"
        ))
        .await;
    browser
        .click_and_wait("#added form[action='/lb/backend/state'] button[value=drained]")
        .await;
    assert_eq!(
        listed(&daemon, &added).unwrap()["state"],
        "drained",
        "{}",
        browser.text("main").await
    );
    let seen = answers(&rig);
    assert!(
        seen.iter().all(|name| *name == first.name),
        "new connections still reach the drained {added}: {seen:?}"
    );

    // The dashboard follows the daemon live (a new generation, one more
    // backend), without a reload.
    let status = daemon.status_json().expect("lb-ctl --json status");
    assert_eq!(status["backends"], 2, "{status}");
    browser.goto(&console.url("/")).await;
    let before = dashboard(&browser).await;
    assert_eq!(before, expected(&status));
    daemon
        .ctl_ok(&["backend", "weight", SERVICE, &added, "3"])
        .unwrap();
    let status = daemon.status_json().expect("lb-ctl --json status");
    let want = expected(&status);
    assert_ne!(want, before, "the change made a new generation");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let shown = dashboard(&browser).await;
        if shown == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dashboard shows {shown:?}, lb-ctl status {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Change the service's health check through its form: an HTTP check
    // of a page the backends do not have. `lb-ctl config export` holds
    // it, and the daemon runs it: every backend goes down.
    browser.goto(&console.url("/lb")).await;
    let summary = browser.find("details.edit summary").await;
    support::browser::bounded("opening the health check's form", summary.click())
        .await
        .unwrap();
    let health = "form[action='/lb/service/health']";
    browser
        .script(&format!(
            "document.querySelector(\"{health} select[name=kind]\").value = 'http'; return null"
        ))
        .await;
    for (field, value) in [
        ("path", "/no-such-page"),
        ("expect_status", "200"),
        ("interval_ms", "200"),
        ("timeout_ms", "200"),
        ("rise", "1"),
        ("fall", "1"),
    ] {
        browser
            .fill(&format!("{health} input[name={field}]"), value)
            .await;
    }
    browser
        .click_and_wait(&format!("{health} button[type=submit]"))
        .await;
    assert!(
        browser
            .text("[role=status]")
            .await
            .contains("The change is applied"),
        "{}",
        browser.text("main").await
    );
    let exported: lb_common::api::Config =
        toml::from_str(&daemon.ctl_ok(&["config", "export"]).unwrap()).unwrap();
    let service = &exported.services[0];
    assert_eq!(
        service.health,
        Some(lb_common::api::HealthSpec {
            check: lb_common::api::Check::Http {
                path: "/no-such-page".into(),
                expect_status: 200,
                body_contains: None,
                host: None,
            },
            timing: lb_common::api::Timing {
                interval_ms: 200,
                timeout_ms: 200,
                rise: 1,
                fall: 1,
            },
        })
    );
    assert_eq!(service.backends.len(), 2, "the backends are kept");
    let shown = browser.text("main").await;
    assert!(
        shown.contains(
            "http GET /no-such-page → 200 · every 200 ms, timeout 200 ms · up after 1, down after 1"
        ),
        "{shown}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    for address in [format!("{}:80", first.v4), added.clone()] {
        while listed(&daemon, &address).unwrap()["health"] != "down" {
            assert!(
                Instant::now() < deadline,
                "{address} still up under a check of a missing page"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let trail = console.audit();
    assert!(
        trail.contains(&format!(
            r#""action":"service set","detail":"{SERVICE} sorry none health http path \"/no-such-page\" expect_status 200 interval_ms 200 timeout_ms 200 rise 1 fall 1","outcome":"ok"#
        )),
        "{trail}"
    );
    assert!(
        trail.contains(&format!(
            r#""action":"backend add","detail":"{SERVICE} {added} weight 1 enabled","outcome":"ok"#
        )),
        "{trail}"
    );
    assert!(
        trail.contains(&format!(
            r#""action":"backend set","detail":"{SERVICE} {added} drained","outcome":"ok"#
        )),
        "{trail}"
    );
    browser.close().await;
    drop(daemon);
}
