//! The console in a real browser: Debian's chromium, headless, against the
//! real `lb-console` binary on 127.0.0.1 (see `support/`). These need
//! chromium and chromium-driver (`cargo xtask setup` installs them) and
//! fail, not skip, without them.
//!
//! Every page (login, login with its error, dashboard, not found, a refused
//! change) is also saved as a screenshot at 1280 and 390 px wide under
//! `target/screenshots/` (`PAGE-WIDTH.png`, and `PAGE-dark-WIDTH.png` in the
//! dark colour scheme), to be looked at.

mod support;

use std::ffi::OsStr;

use support::browser::{Browser, DESKTOP, PHONE, screenshot_dir};
use support::console::{Console, PASSWORD, USER};
use support::daemon::{self, FakeDaemon};

/// The console asking `daemon`, linking to a peer console.
fn console_for(daemon: &FakeDaemon) -> Console {
    Console::start_with(&[
        OsStr::new("--socket"),
        daemon.socket().as_os_str(),
        OsStr::new("--peer-console"),
        OsStr::new("https://198.18.0.1:50453/"),
        // Samples often enough for the Statistics page to have rates (and
        // the fake daemon's restart) within the test's time.
        OsStr::new("--stats-interval"),
        OsStr::new("500ms"),
    ])
}

/// Opens the Statistics page until its charts have lines and, if `gap`,
/// a shaded gap (the fake daemon's restart), and the first service's rate
/// is known (not the sample that started over): at most 30 s.
async fn stats_with_rates(browser: &Browser, console: &Console, gap: bool) {
    let mut seen = (0, 0);
    for _ in 0..60 {
        browser.goto(&console.url("/stats")).await;
        let lines = browser.count("svg.chart polyline.line").await;
        let gaps = browser.count("svg.chart rect.gap").await;
        seen = (lines, gaps);
        let known = browser
            .text("strong[data-rate='packets/s']")
            .await
            .ends_with(" packets/s");
        if lines > 0 && (!gap || gaps > 0) && known {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    panic!(
        "the Statistics page has {} lines and {} gaps after 30 s:\n{}",
        seen.0,
        seen.1,
        browser.text("main").await
    );
}

const LOGIN_TITLE: &str = "Log in · lb console";
const WRONG: &str = "Wrong user name or password.";

/// Fills the login form and submits it.
async fn log_in(browser: &Browser, user: &str, password: &str) {
    browser.fill("#user", user).await;
    browser.fill("#password", password).await;
    browser
        .click_and_wait("form.stack button[type=submit]")
        .await;
}

async fn field_value(browser: &Browser, css: &str) -> String {
    browser
        .find(css)
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_logs_in_sees_the_dashboard_and_logs_out() {
    let console = Console::start();
    let browser = Browser::start(console.spki()).await;

    // Without a session the dashboard sends the browser to the login page.
    browser.goto(&console.url("/")).await;
    assert_eq!(browser.path().await, "/login");
    assert_eq!(browser.title().await, LOGIN_TITLE);

    // A wrong password: the error, still the login page, the user name
    // kept and the password not.
    log_in(&browser, USER, "not the password").await;
    assert_eq!(browser.path().await, "/login");
    assert_eq!(browser.title().await, LOGIN_TITLE);
    assert_eq!(browser.text("[role=alert]").await, WRONG);
    assert_eq!(field_value(&browser, "#user").await, USER);
    assert_eq!(field_value(&browser, "#password").await, "");
    browser.goto(&console.url("/")).await;
    assert_eq!(
        browser.path().await,
        "/login",
        "a wrong password opened a session"
    );

    // The right one: the dashboard of this host.
    log_in(&browser, USER, PASSWORD).await;
    assert_eq!(browser.path().await, "/");
    let title = browser.title().await;
    assert!(title.starts_with("Dashboard · "), "{title}");
    let host = lb_console::hostname();
    assert!(browser.text("#node + dl").await.contains(&host));
    assert!(browser.text("header.bar").await.contains(USER));
    assert_eq!(browser.count("[role=alert]").await, 0);
    // The session cookie is HttpOnly: the page's scripts do not see it.
    assert_eq!(browser.script("return document.cookie").await, "");
    // It lasts: the dashboard opens again.
    browser.goto(&console.url("/")).await;
    assert_eq!(browser.path().await, "/");

    // Logging out ends the session: the dashboard sends to the login again.
    browser.click_and_wait("header.bar form button").await;
    assert_eq!(browser.path().await, "/login");
    assert_eq!(browser.title().await, LOGIN_TITLE);
    browser.goto(&console.url("/")).await;
    assert_eq!(browser.path().await, "/login");

    let trail = console.audit();
    for (action, outcome) in [
        ("login", "refused: wrong user name or password"),
        ("login", "ok"),
        ("logout", "ok"),
    ] {
        assert!(
            trail.contains(&format!(
                r#""action":"{action}","detail":"","outcome":"{outcome}""#
            )),
            "{action} {outcome} missing from the audit trail:\n{trail}\nlog:\n{}",
            console.log()
        );
    }
    browser.close().await;
}

/// Checks that the page fits `width` (nothing wider than the viewport) and
/// saves its screenshot.
async fn look_at(browser: &Browser, page: &str, width: u32) {
    let path = browser.screenshot(&screenshot_dir(), page, width).await;
    let overflow = browser.overflow_x().await;
    let wide = browser
        .script(
            "return [...document.querySelectorAll('body *')]\
             .filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5)\
             .map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : ''))",
        )
        .await;
    assert_eq!(
        overflow,
        0,
        "{page} is {overflow} px wider than {width} px (see {}); too wide: {wide}",
        path.display()
    );
}

/// Opens every page at both widths, checks that each fits and saves its
/// screenshot as `PAGE{suffix}-WIDTH.png`.
async fn tour(browser: &Browser, console: &Console, suffix: &str) {
    let look = |page: &str, width| {
        let name = format!("{page}{suffix}");
        async move { look_at(browser, &name, width).await }
    };
    for width in [DESKTOP, PHONE] {
        browser.set_width(width).await;
        browser.goto(&console.url("/login")).await;
        look("login", width).await;

        log_in(browser, USER, "not the password").await;
        assert_eq!(browser.text("[role=alert]").await, WRONG);
        look("login-error", width).await;

        log_in(browser, USER, PASSWORD).await;
        assert_eq!(browser.path().await, "/");
        look("dashboard", width).await;

        browser.goto(&console.url("/lb")).await;
        assert!(browser.text("main").await.contains("tcp/198.18.0.100:80"));
        look("lb", width).await;
        // A service's health check, its form opened.
        let summary = browser.find("details.edit summary").await;
        support::browser::bounded("opening the health check's form", summary.click())
            .await
            .unwrap();
        look("lb-health", width).await;
        // A refused form: the reason by its field, what was typed kept.
        browser
            .fill(
                "form[action='/lb/backend/weight'] input[name=weight]",
                "ten",
            )
            .await;
        browser
            .click_and_wait("form[action='/lb/backend/weight'] button")
            .await;
        assert!(
            browser
                .text("#weight-error")
                .await
                .contains("is not a weight")
        );
        look("lb-error", width).await;

        browser
            .click_and_wait("form[action='/lb/service/delete'] button")
            .await;
        assert!(browser.text("h2").await.starts_with("Delete service"));
        look("lb-confirm-delete", width).await;

        // The fake daemon's counters grow: rates, and a restart's gap.
        stats_with_rates(browser, console, width == DESKTOP).await;
        let packets = browser.text("strong[data-rate='packets/s']").await;
        assert!(packets.ends_with(" packets/s"), "{packets}");
        look("stats", width).await;

        browser.goto(&console.url("/cluster")).await;
        assert!(browser.text("#group + dl").await.contains("lb1"));
        look("cluster", width).await;
        browser
            .goto(&console.url("/cluster/confirm/failover"))
            .await;
        look("cluster-confirm", width).await;
        // The cluster's settings as a draft (nothing sent by showing it).
        browser.goto(&console.url("/cluster/settings")).await;
        assert!(
            browser
                .text("h2")
                .await
                .starts_with("Cluster settings (draft)")
        );
        look("cluster-settings", width).await;

        // The test's own namespace, read through rtnetlink: loopback at
        // least.
        browser.goto(&console.url("/network")).await;
        assert!(browser.text("main").await.contains("127.0.0.1/8"));
        look("network", width).await;
        // A refused MTU (the test's own namespace: only a refusal here,
        // nothing is changed): the reason by the field, the input kept.
        let mtu = "form[action='/network/mtu']";
        browser.fill(&format!("{mtu} input[name=mtu]"), "big").await;
        browser.click_and_wait(&format!("{mtu} button")).await;
        assert!(
            browser
                .text("#mtu-error")
                .await
                .contains("\"big\" is not an MTU")
        );
        assert_eq!(field_value(browser, "[aria-invalid=true]").await, "big");
        look("network-error", width).await;

        browser.goto(&console.url("/alerts")).await;
        assert!(browser.text("main").await.contains("backend_down"));
        look("alerts", width).await;

        browser.goto(&console.url("/config")).await;
        look("config", width).await;
        upload(browser, "[node]\nname = \"lb1\"\nnope = 3\n").await;
        assert!(
            browser
                .text("[role=alert]")
                .await
                .contains("nothing was changed")
        );
        look("config-refused", width).await;

        browser.goto(&console.url("/no/such/page")).await;
        assert!(browser.text("h1").await.contains("Page not found"));
        look("not-found", width).await;

        // A change whose CSRF token is not the session's: refused, and
        // nothing happened (still logged in).
        browser.goto(&console.url("/")).await;
        browser
            .script("document.querySelector('input[name=csrf]').value = 'forged'; return null")
            .await;
        browser.click_and_wait("header.bar form button").await;
        assert_eq!(browser.text("h1").await, "Request refused");
        look("refused", width).await;
        browser.goto(&console.url("/")).await;
        assert_eq!(browser.path().await, "/");

        browser.click_and_wait("header.bar form button").await;
        assert_eq!(browser.path().await, "/login");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_fits_a_desktop_and_a_phone_and_is_saved_as_a_screenshot() {
    let daemon = FakeDaemon::start(daemon::ACTIVE);
    let console = console_for(&daemon);
    let browser = Browser::start(console.spki()).await;
    tour(&browser, &console, "").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_in_the_dark_colour_scheme_fits_and_is_saved_as_a_screenshot() {
    let daemon = FakeDaemon::start(daemon::ACTIVE);
    let console = console_for(&daemon);
    let browser = Browser::start_dark(console.spki()).await;
    assert_eq!(
        browser
            .script("return matchMedia('(prefers-color-scheme: dark)').matches")
            .await,
        true
    );
    tour(&browser, &console, "-dark").await;
    browser.close().await;
}

/// Chooses a file holding `text` in the restore form and submits it.
async fn upload(browser: &Browser, text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lb-backup.toml");
    std::fs::write(&path, text).unwrap();
    support::browser::bounded(
        "choosing the file",
        browser
            .find("#file")
            .await
            .send_keys(path.to_str().unwrap()),
    )
    .await
    .unwrap();
    browser
        .click_and_wait("form[action='/config/restore'] button")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_standby_the_lb_settings_are_read_only_with_a_link_to_the_active() {
    let daemon = FakeDaemon::start(daemon::STANDBY);
    let console = console_for(&daemon);
    let browser = Browser::start(console.spki()).await;
    browser.goto(&console.url("/login")).await;
    log_in(&browser, USER, PASSWORD).await;
    for width in [DESKTOP, PHONE] {
        browser.set_width(width).await;
        browser.goto(&console.url("/lb")).await;
        assert!(
            browser
                .text("main")
                .await
                .contains("Read-only: this node is the standby")
        );
        assert_eq!(browser.count("main form").await, 0);
        assert_eq!(
            browser
                .find("main .readonly a")
                .await
                .attr("href")
                .await
                .unwrap()
                .as_deref(),
            Some("https://198.18.0.1:50453/")
        );
        look_at(&browser, "lb-standby", width).await;
        browser.goto(&console.url("/cluster")).await;
        look_at(&browser, "cluster-standby", width).await;
    }
    assert_eq!(daemon.asked(), []);
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_changes_backends_fails_over_and_restores_through_the_forms() {
    let daemon = FakeDaemon::start(daemon::ACTIVE);
    let console = console_for(&daemon);
    let browser = Browser::start(console.spki()).await;
    browser.goto(&console.url("/login")).await;
    log_in(&browser, USER, PASSWORD).await;

    // Add a backend to the first service.
    browser.goto(&console.url("/lb")).await;
    let add = "form[action='/lb/backend/add']";
    browser
        .fill(&format!("{add} input[name=address]"), "198.18.1.13:80")
        .await;
    browser
        .fill(&format!("{add} input[name=weight]"), "2")
        .await;
    browser.click_and_wait(&format!("{add} button")).await;
    assert_eq!(browser.path().await, "/lb");
    assert!(browser.text("[role=status]").await.contains("generation 8"));
    // Drain the first backend.
    browser
        .click_and_wait("form[action='/lb/backend/state'] button[value=drained]")
        .await;
    // Fail over, through the confirmation.
    browser.goto(&console.url("/cluster")).await;
    browser
        .click_and_wait("a[href='/cluster/confirm/failover']")
        .await;
    assert_eq!(browser.path().await, "/cluster/confirm/failover");
    browser
        .click_and_wait("form[action='/cluster/failover'] button")
        .await;
    assert_eq!(
        browser.text("[role=status]").await,
        "the group moves to lb2"
    );
    // A backup restored as it was downloaded.
    browser.goto(&console.url("/config")).await;
    let toml = lb_console_toml();
    upload(&browser, &toml).await;
    assert!(
        browser
            .text("[role=status]")
            .await
            .contains("the configuration is now generation 8"),
        "{}",
        browser.text("main").await
    );

    let asked = daemon.asked();
    let bodies: Vec<(&str, &str, &str)> = asked
        .iter()
        .map(|(m, p, b)| (m.as_str(), p.as_str(), b.as_str()))
        .collect();
    assert_eq!(bodies.len(), 4, "{bodies:?}");
    assert_eq!(
        bodies[..3],
        [
            (
                "POST",
                "/v1/changes",
                r#"{"op":"add_backend","service":{"protocol":"tcp","vip":"198.18.0.100:80"},"backend":{"address":"198.18.1.13:80","weight":2,"state":"enabled"}}"#
            ),
            (
                "POST",
                "/v1/changes",
                r#"{"op":"set_backend","service":{"protocol":"tcp","vip":"198.18.0.100:80"},"address":"198.18.1.11:80","state":"drained"}"#
            ),
            ("POST", "/v1/cluster/failover", "null"),
        ]
    );
    assert_eq!((bodies[3].0, bodies[3].1), ("PUT", "/v1/config"));
    let trail = console.audit();
    for (action, outcome) in [
        ("backend add", "ok (generation 8)"),
        ("backend set", "ok (generation 8)"),
        ("cluster failover", "ok"),
        ("config restore", "ok (generation 8)"),
    ] {
        assert!(
            trail.contains(&format!(r#""action":"{action}""#))
                && trail.contains(&format!(r#""outcome":"{outcome}""#)),
            "{action} {outcome} missing from the audit trail:\n{trail}"
        );
    }
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_settings_are_validated_then_applied_through_a_confirmation() {
    let daemon = FakeDaemon::start(daemon::ACTIVE);
    let console = console_for(&daemon);
    let browser = Browser::start(console.spki()).await;
    browser.goto(&console.url("/login")).await;
    log_in(&browser, USER, PASSWORD).await;
    browser.goto(&console.url("/cluster")).await;
    browser.click_and_wait("a[href='/cluster/settings']").await;
    assert_eq!(browser.path().await, "/cluster/settings");
    // The draft: automatic failback on, one monitor's retries; validated.
    let tick = browser.find("#auto_failback").await;
    support::browser::bounded("ticking auto_failback", tick.click())
        .await
        .unwrap();
    browser.fill("input[name='monitors[0].retries']", "2").await;
    browser
        .click_and_wait("button[name=action][value=validate]")
        .await;
    assert_eq!(
        browser.text("[role=status]").await,
        "The draft is valid: auto_failback true monitors[0].retries 2. Applying it, the cluster takes cluster.auto_failback live."
    );
    assert_eq!(
        browser
            .find("input[name='monitors[0].retries']")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("2"),
        "the draft is kept"
    );
    // Apply: a confirmation first, then the configuration.
    browser
        .click_and_wait("button[name=action][value=apply]")
        .await;
    assert!(
        browser
            .text("h2")
            .await
            .starts_with("Apply these cluster settings?")
    );
    assert_eq!(
        daemon.asked().len(),
        2,
        "nothing applied before the confirmation"
    );
    browser
        .click_and_wait("form[action='/cluster/settings'] button[value=apply]")
        .await;
    assert_eq!(
        browser.text("[role=status]").await,
        "The cluster settings are applied: the configuration is now generation 8."
    );
    let asked: Vec<(String, String)> = daemon.asked().into_iter().map(|(m, p, _)| (m, p)).collect();
    assert_eq!(
        asked,
        [
            ("POST", "/v1/config/check"),
            ("POST", "/v1/config/check"),
            ("PUT", "/v1/config"),
        ]
        .map(|(m, p)| (m.to_owned(), p.to_owned()))
    );
    let sent: lb_common::api::Config = serde_json::from_str(&daemon.asked()[2].2).unwrap();
    let cluster = sent.cluster.unwrap();
    assert_eq!(
        (cluster.auto_failback, cluster.monitors[0].retries),
        (true, 2)
    );
    assert!(
        console.audit().contains(
            r#""action":"cluster settings","detail":"auto_failback true monitors[0].retries 2","outcome":"ok (generation 8)""#
        ),
        "{}",
        console.audit()
    );
    browser.close().await;
}

/// The fixture configuration as a backup file.
fn lb_console_toml() -> String {
    let config: toml::Value = serde_json::from_str(daemon::CONFIG).unwrap();
    toml::to_string(&config).unwrap()
}

/// Waits (bounded: 20 s) until `css`'s text is `want`; its last text.
async fn wait_for_text(browser: &Browser, css: &str, want: &str) -> String {
    let mut text = String::new();
    for _ in 0..80 {
        text = browser.text(css).await;
        if text == want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    text
}

/// Waits (20 s at most) until the text of `css` contains `want`; the last
/// text read.
async fn wait_for_text_containing(browser: &Browser, css: &str, want: &str) -> String {
    let mut text = String::new();
    for _ in 0..80 {
        text = browser.text(css).await;
        if text.contains(want) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboards_values_follow_the_daemon_and_turn_unknown_when_it_stops() {
    let daemon = FakeDaemon::start(daemon::ACTIVE);
    let console = console_for(&daemon);
    let browser = Browser::start(console.spki()).await;
    browser.goto(&console.url("/login")).await;
    log_in(&browser, USER, PASSWORD).await;
    assert_eq!(browser.path().await, "/");
    let role = "[data-live=role]";
    assert_eq!(browser.text(role).await, "active");
    // The daemon's answer changes: the page follows without a reload.
    daemon.set_status(daemon::STANDBY);
    assert_eq!(wait_for_text(&browser, role, "standby").await, "standby");
    assert_eq!(browser.path().await, "/");
    // So do the recent alerts: a new one is listed first.
    let recent = "[data-live-alerts] li";
    assert!(browser.text(recent).await.contains("no_usable_backend"));
    daemon.set_alerts(
        r#"[{"time":"2026-11-25T15:00:00Z","level":"warning","event":"failover","message":"this node is now standby (moved by the operator); the floating IPs left"}]"#,
    );
    let first = wait_for_text_containing(&browser, recent, "failover").await;
    assert!(first.contains("this node is now standby"), "{first}");
    assert!(first.contains("warning"), "{first}");
    assert_eq!(browser.path().await, "/");
    // The daemon stops answering: unknown, with why; never the last value.
    daemon.stop();
    assert_eq!(wait_for_text(&browser, role, "unknown").await, "unknown");
    assert_eq!(
        wait_for_text(&browser, "[data-live-alerts]", "unknown").await,
        "unknown"
    );
    for value in ["node", "group_runs_on", "peer", "settings"] {
        assert_eq!(
            browser.text(&format!("[data-live={value}]")).await,
            "unknown",
            "{value}"
        );
    }
    assert!(
        browser
            .text("[data-live=error]")
            .await
            .contains("cannot reach the lb-ctl daemon"),
    );
    look_at(&browser, "dashboard-daemon-stopped", DESKTOP).await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboards_values_turn_unknown_when_the_console_stops_answering() {
    let daemon = FakeDaemon::start(daemon::ACTIVE);
    let console = console_for(&daemon);
    let browser = Browser::start(console.spki()).await;
    browser.goto(&console.url("/login")).await;
    log_in(&browser, USER, PASSWORD).await;
    assert_eq!(browser.path().await, "/");
    assert_eq!(browser.text("[data-live=role]").await, "active");
    // The console goes (the daemon still answers): the page's fetch fails.
    drop(console);
    assert_eq!(
        wait_for_text(&browser, "[data-live=role]", "unknown").await,
        "unknown"
    );
    assert_eq!(browser.text("[data-live=group_runs_on]").await, "unknown");
    assert!(
        browser
            .text("[data-live=error]")
            .await
            .starts_with("The console did not answer"),
    );
    browser.close().await;
}
