//! The consoles of a pair, in a real browser, against real daemons: the
//! pair rig (client; lb1 and lb2 on shared segments with two
//! interconnects; nginx backends behind the floating gateway), `lb-ctl
//! cluster init` and `lb-ctl run` on both nodes (`lb_tests::flow_pair`),
//! and one `lb-console` per node inside the node's namespace, on its
//! client-side address, asking its own daemon and linking to the other
//! node's console (`--peer-console`), as `cargo xtask demo` runs them.
//! Chromium reaches them as the client host would (`support::proxy`), one
//! window per console.
//!
//! Each dashboard says what its node's `lb-ctl --json status` says (lb1
//! active and its peer standby, lb2 the reverse); Failover on lb1's
//! Cluster page, confirmed, turns both dashboards around without a reload
//! (their live values), the VIP answers through lb2, and lb1's LB settings
//! page is read-only with a link that leads to lb2's console. Both
//! dashboards are saved before and after as `target/screenshots/pair-*`.
//! Needs root, chromium, chromium-driver and nginx (`cargo xtask setup`)
//! and the `lb-ctl` binary built beside `lb-console` (`cargo build -p
//! lb-ctl`): it fails, never skips, without them.

#[allow(dead_code)]
mod support;

use std::ffi::OsStr;
use std::time::{Duration, Instant};

use fantoccini::wd::WindowHandle;
use lb_tests::daemon::DaemonProcess;
use lb_tests::flow_pair::FlowPair;
use lb_tests::flow_scenario::service_packets;
use lb_tests::rig::{Rig, VIP_V4};
use serde_json::Value;
use support::browser::{Browser, DESKTOP, bounded, screenshot_dir};
use support::console::Console;
use support::lb_ctl;
use support::proxy::Proxy;

/// Each console's port, on its node's client-side address.
const PORT: u16 = 50453;
/// How long both dashboards get to show a failover (the daemons hand the
/// group over in about a second, the pages ask every 2 s; a loaded
/// machine is slower).
const CHANGE_WITHIN: Duration = Duration::from_secs(20);
/// How long the VIP gets to answer (health checks, the group's move).
const VIP_WITHIN: Duration = Duration::from_secs(20);
/// How long lb1 gets to hear lb2 eligible for a failover.
const ELIGIBLE_WITHIN: Duration = Duration::from_secs(20);
/// New connections through the VIP per look (bounded).
const TRIES: usize = 12;
/// The dashboard's values this test follows (`data-live`), in this order.
const SHOWN: [&str; 4] = ["node", "role", "peer", "group_runs_on"];
/// Set on each dashboard's page by the test: gone if the page reloads.
const MARK: &str = "lbPairTestMark";

/// One TCP service on the VIP over every backend, TCP health checks.
fn services(rig: &Rig) -> String {
    let mut text = format!(
        "\n[[services]]\nvip = \"{VIP_V4}\"\nport = 80\nprotocol = \"tcp\"\nmode = \"nat\"\n\
         health = {{ kind = \"tcp\", interval_ms = 300, timeout_ms = 300, rise = 2, fall = 2 }}\n"
    );
    for backend in &rig.backends {
        text.push_str(&format!(
            "\n[[services.backends]]\naddress = \"{}:80\"\n",
            backend.v4
        ));
    }
    text
}

/// A node: its daemon, its console and the window showing its dashboard.
struct Node<'a> {
    name: &'static str,
    daemon: &'a DaemonProcess,
    console: Console,
    window: Option<WindowHandle>,
}

impl Node<'_> {
    /// The console's URL at the node's address.
    fn url(&self, path: &str) -> String {
        self.console.url(path)
    }

    /// What the node's dashboard shows ([`SHOWN`]), read in its window.
    async fn shown(&self, browser: &Browser) -> [String; 4] {
        browser
            .switch_to(self.window.as_ref().expect("the dashboard's window"))
            .await;
        let mut shown = [const { String::new() }; 4];
        for (value, key) in shown.iter_mut().zip(SHOWN) {
            *value = browser.text(&format!("[data-live={key}]")).await;
        }
        shown
    }

    /// What the dashboard should show ([`SHOWN`]) for the node's `lb-ctl
    /// --json status` now.
    fn expected(&self) -> [String; 4] {
        let status = self
            .daemon
            .status_json()
            .unwrap_or_else(|| panic!("{}: lb-ctl --json status did not answer", self.name));
        expected(&status)
    }

    /// Saves the dashboard (in its window) as `pair-NAME-dashboard-WHEN`.
    async fn screenshot(&self, browser: &Browser, when: &str) {
        browser
            .switch_to(self.window.as_ref().expect("the dashboard's window"))
            .await;
        let path = browser
            .screenshot(
                &screenshot_dir(),
                &format!("pair-{}-dashboard-{when}", self.name),
                DESKTOP,
            )
            .await;
        println!("saved {}", path.display());
    }

    /// Whether the dashboard's page is still the one marked ([`MARK`]):
    /// not reloaded.
    async fn not_reloaded(&self, browser: &Browser) -> bool {
        browser
            .switch_to(self.window.as_ref().expect("the dashboard's window"))
            .await;
        browser
            .script(&format!("return window.{MARK} === true"))
            .await
            == Value::Bool(true)
    }
}

/// The dashboard's values ([`SHOWN`]) for `status` (`lb-ctl --json
/// status`), as `lb-console`'s live values word them.
fn expected(status: &Value) -> [String; 4] {
    let text = |v: &Value| {
        v.as_str()
            .unwrap_or_else(|| panic!("{v} in {status}"))
            .to_owned()
    };
    let cluster = &status["cluster"];
    let alive = cluster["peer_alive"] == true;
    let peer = if alive {
        text(&cluster["peer_role"])
    } else {
        "not heard, role unknown".to_owned()
    };
    let runs_on = if cluster["role"] == "active" {
        text(&cluster["servers"][0])
    } else if alive && cluster["peer_role"] == "active" {
        text(&cluster["servers"][1])
    } else {
        "unknown".to_owned()
    };
    [text(&status["node"]), text(&status["role"]), peer, runs_on]
}

fn strings(values: [&str; 4]) -> [String; 4] {
    values.map(str::to_owned)
}

/// Whether node `i` holds the VIP on its client-side interface.
fn holds_vip(rig: &Rig, i: usize) -> bool {
    let node = &rig.nodes[i];
    let out = node
        .ns
        .ip(["-o", "addr", "show", "dev", node.ext_iface])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains(&format!("inet {VIP_V4}/32"))
}

/// Waits (at most [`VIP_WITHIN`]) until the VIP answers from the client,
/// then opens [`TRIES`] new connections through it: each must be answered
/// by a backend (its name).
async fn vip_answers(rig: &Rig) -> Vec<String> {
    let url = format!("http://{VIP_V4}/");
    let deadline = Instant::now() + VIP_WITHIN;
    while let Err(error) = rig.curl(&url) {
        assert!(
            Instant::now() < deadline,
            "{url} did not answer within {VIP_WITHIN:?}: {error:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let names: Vec<&str> = rig.backends.iter().map(|b| b.name.as_str()).collect();
    (0..TRIES)
        .map(|_| {
            let body = rig.curl(&url).unwrap().trim().to_owned();
            assert!(names.contains(&body.as_str()), "{url} answered {body:?}");
            body
        })
        .collect()
}

/// Waits (bounded) until lb1 hears lb2 eligible: a failover is accepted
/// only then.
async fn until_eligible(lb1: &DaemonProcess) {
    let deadline = Instant::now() + ELIGIBLE_WITHIN;
    while !lb1.peer_eligible() {
        assert!(
            Instant::now() < deadline,
            "lb1 did not hear lb2 eligible within {ELIGIBLE_WITHIN:?}: {:?}",
            lb1.status_json()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_from_the_cluster_page_turns_both_dashboards_around() {
    let bin = lb_ctl();
    let pair = FlowPair::start(&bin, 2, |rig| rig.start_nginx(), services)
        .expect("the pair rig, lb1 active and lb2 standby");
    let rig = &pair.rig;
    let address = |i: usize| rig.nodes[i].ext_v4;
    let peer_url = |i: usize| format!("https://{}:{PORT}/", address(1 - i));
    let start = |i: usize, name: &'static str, daemon| {
        let console = Console::start_in(
            Some(rig.nodes[i].ns.name()),
            &format!("{}:{PORT}", address(i)),
            &[
                OsStr::new("--socket"),
                DaemonProcess::files(daemon).socket().as_os_str(),
                OsStr::new("--peer-console"),
                OsStr::new(&peer_url(i)),
            ],
        );
        assert_eq!(console.url("/"), format!("https://{}:{PORT}/", address(i)));
        Node {
            name,
            daemon,
            console,
            window: None,
        }
    };
    let mut lb1 = start(0, "lb1", &pair.lb1);
    let mut lb2 = start(1, "lb2", &pair.lb2);

    // The browser, as the client host: one window per console.
    let proxy = Proxy::start(&rig.client);
    let browser = Browser::start_via(&[lb1.console.spki(), lb2.console.spki()], &proxy).await;
    lb1.window = Some(browser.window().await);
    lb1.console.log_in(&browser).await;
    lb2.window = Some(browser.new_window().await);
    lb2.console.log_in(&browser).await;

    // The VIP answers through lb1.
    assert!(holds_vip(rig, 0) && !holds_vip(rig, 1));
    vip_answers(rig).await;

    // Each dashboard says what its daemon says.
    let before = [
        strings(["lb1", "active", "standby", "lb1"]),
        strings(["lb2", "standby", "active", "lb1"]),
    ];
    for (node, want) in [&lb1, &lb2].into_iter().zip(&before) {
        assert_eq!(&node.expected(), want, "{}'s lb-ctl status", node.name);
        assert_eq!(
            &node.shown(&browser).await,
            want,
            "{}'s dashboard",
            node.name
        );
        node.screenshot(&browser, "before").await;
        browser
            .script(&format!("window.{MARK} = true; return null"))
            .await;
    }

    // Failover on lb1's Cluster page (a window of its own: both dashboards
    // stay open), through the confirmation.
    let operations = browser.new_window().await;
    browser.goto(&lb1.url("/cluster")).await;
    until_eligible(&pair.lb1).await;
    browser
        .click_and_wait("a[href='/cluster/confirm/failover']")
        .await;
    assert_eq!(browser.path().await, "/cluster/confirm/failover");
    let now = browser.text("section[aria-labelledby=confirm] p.sub").await;
    assert!(
        now.starts_with("Now: lb1 is active; lb2 is standby ("),
        "{now}"
    );
    browser
        .click_and_wait("form[action='/cluster/failover'] button")
        .await;
    assert_eq!(browser.path().await, "/cluster/failover");
    assert_eq!(
        browser.count("[role=alert]").await,
        0,
        "{}",
        browser.text("main").await
    );
    assert_eq!(
        browser.text("p.notice[role=status]").await,
        "the group is moving to lb2 (`lb-ctl status` shows where it runs)"
    );

    // Both dashboards turn around by themselves.
    let after = [
        strings(["lb1", "standby", "active", "lb2"]),
        strings(["lb2", "active", "standby", "lb2"]),
    ];
    let asked = Instant::now();
    let deadline = asked + CHANGE_WITHIN;
    loop {
        let shown = [lb1.shown(&browser).await, lb2.shown(&browser).await];
        if shown == after {
            println!(
                "both dashboards turned {:.1} s after the failover was accepted",
                asked.elapsed().as_secs_f64()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after {CHANGE_WITHIN:?} the dashboards show {shown:?}, not {after:?}; \
             lb-ctl status says {:?}",
            [lb1.expected(), lb2.expected()]
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for (node, want) in [&lb1, &lb2].into_iter().zip(&after) {
        assert!(
            node.not_reloaded(&browser).await,
            "{}'s dashboard was reloaded",
            node.name
        );
        assert_eq!(&node.expected(), want, "{}'s lb-ctl status", node.name);
        node.screenshot(&browser, "after").await;
    }

    // The VIP answers, through lb2 now.
    let deadline = Instant::now() + VIP_WITHIN;
    while holds_vip(rig, 0) || !holds_vip(rig, 1) {
        assert!(
            Instant::now() < deadline,
            "the VIP is not on lb2 alone after {VIP_WITHIN:?}: lb1 {}, lb2 {}",
            holds_vip(rig, 0),
            holds_vip(rig, 1)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let forwarded = service_packets(&pair.lb2);
    vip_answers(rig).await;
    let more = service_packets(&pair.lb2) - forwarded;
    assert!(
        more >= 2 * TRIES as u64,
        "lb2 forwarded {more} packets for {TRIES} connections"
    );

    // lb1's LB settings are read-only now, with a link to lb2's console.
    browser.switch_to(&operations).await;
    browser.goto(&lb1.url("/lb")).await;
    assert_eq!(
        browser.text("section.readonly h2").await,
        "Read-only: this node is the standby"
    );
    assert_eq!(
        browser.text("section.readonly p").await,
        "The LB settings are changed on the active node (lb2), which pushes them to this one. \
         Open the active node's console."
    );
    assert_eq!(browser.count("form[action^='/lb/']").await, 0);
    let link = browser.find("section.readonly a").await;
    let href = bounded("reading the link", link.attr("href"))
        .await
        .unwrap();
    assert_eq!(href.as_deref(), Some(peer_url(0).as_str()));
    let path = browser
        .screenshot(&screenshot_dir(), "pair-lb1-lb-standby", DESKTOP)
        .await;
    println!("saved {}", path.display());
    // It leads to lb2's console: its login page, although this browser
    // is logged in there (the session cookie is SameSite=Strict, and
    // another node's address is another site: a link from there does not
    // carry it).
    browser.click_and_wait("section.readonly a").await;
    assert_eq!(
        browser.script("return location.href").await,
        Value::String(format!("{}login", peer_url(0)))
    );
    assert_eq!(browser.title().await, "Log in · lb console");
    // Opened directly, lb2's console knows the session: its dashboard,
    // and LB settings that take changes.
    browser.goto(&lb2.url("/")).await;
    assert_eq!(browser.text("[data-live=node]").await, "lb2");
    assert_eq!(browser.text("[data-live=role]").await, "active");
    browser.goto(&lb2.url("/lb")).await;
    assert_eq!(browser.count("section.readonly").await, 0);
    assert_eq!(
        browser.count("form[action='/lb/backend/add']").await,
        1,
        "{}",
        browser.text("main").await
    );

    let trail = lb1.console.audit();
    assert!(
        trail.contains(r#""action":"cluster failover","detail":"","outcome":"ok""#),
        "{trail}"
    );
    browser.close().await;
}
