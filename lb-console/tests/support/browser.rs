//! A real browser for tests: Debian's chromium, headless, driven through
//! chromium-driver (WebDriver) with fantoccini. `cargo xtask setup`
//! installs both packages; a machine without them fails these tests with
//! that advice instead of skipping them.
//!
//! Every step is bounded in time ([`STEP`]); chromedriver runs in a process
//! group of its own with the chromium it starts, and the whole group is
//! killed when the [`Browser`] is dropped, also when a test panics.

use std::fs::File;
use std::future::Future;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator, elements::Element, wd::WindowHandle};
use serde_json::{Value, json};

use super::proxy::Proxy;

/// Debian's chromium-driver.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Debian's chromium: the program itself, not the `/usr/bin/chromium`
/// shell launcher (which only adds desktop flags and API keys).
pub const CHROMIUM: &str = "/usr/lib/chromium/chromium";

/// The widths the console must be readable at: a desktop and a phone.
pub const DESKTOP: u32 = 1280;
pub const PHONE: u32 = 390;
/// The window's height before a full-page screenshot stretches it.
const HEIGHT: u32 = 900;

/// The longest any one browser step may take (a page load, a click, a
/// screenshot, chromedriver answering); past it the test fails.
pub const STEP: Duration = Duration::from_secs(20);
/// How long chromedriver gets to listen.
const DRIVER_READY: Duration = Duration::from_secs(10);

/// Awaits `step` for at most [`STEP`]; panics naming `what` otherwise.
pub async fn bounded<T>(what: &str, step: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, step).await {
        Ok(value) => value,
        Err(_) => panic!("browser: {what} took more than {} s", STEP.as_secs()),
    }
}

/// chromedriver and what it started: killed, as a process group, on drop.
struct Driver {
    /// `None` once killed (the group id may be reused after that).
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Driver {
    /// Starts chromedriver on a free loopback port (another try on another
    /// port if the one picked was taken in between) and waits until it
    /// accepts connections.
    fn start(dir: &Path) -> Driver {
        for program in [CHROMEDRIVER, CHROMIUM] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing: `cargo xtask setup` installs Debian's chromium and \
                 chromium-driver for the browser tests"
            );
        }
        let log = dir.join("chromedriver.log");
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let out = File::create(&log).unwrap();
            let mut child = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                // Its own group: chromium and its helpers join it, and one
                // kill(-pgid) ends them all.
                .process_group(0)
                .spawn()
                .unwrap_or_else(|err| panic!("cannot start {CHROMEDRIVER}: {err}"));
            let deadline = Instant::now() + DRIVER_READY;
            loop {
                if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                    return Driver {
                        child: Some(child),
                        port,
                        log,
                    };
                }
                if let Some(status) = child.try_wait().unwrap() {
                    last = format!("exited ({status})");
                    break;
                }
                if Instant::now() > deadline {
                    kill_group(&mut child);
                    last = format!("did not listen within {} s", DRIVER_READY.as_secs());
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!(
            "chromedriver {last}:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// SIGKILL to the child's whole process group, then reaps the child.
fn kill_group(child: &mut Child) {
    let pgid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on the process group this harness created for its
    // own chromedriver (process_group(0): pgid == its pid).
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let _ = child.wait();
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(&mut child);
        }
    }
}

/// A headless chromium with one window, through its WebDriver session.
pub struct Browser {
    client: Option<Client>,
    driver: Driver,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless chromium `DESKTOP` px wide.
    /// `trusted_spki` is the base64 SHA-256 of the public key of the one
    /// self-signed certificate the browser accepts (the console's in the
    /// test): chromium still rejects every other certificate error.
    pub async fn start(trusted_spki: &str) -> Browser {
        Self::start_with(trusted_spki, false, None).await
    }

    /// Like [`Browser::start`], with pages asking for a dark colour scheme
    /// (`prefers-color-scheme: dark`).
    pub async fn start_dark(trusted_spki: &str) -> Browser {
        Self::start_with(trusted_spki, true, None).await
    }

    /// Like [`Browser::start`], trusting each of `trusted_spkis` (several
    /// consoles), with every connection through `proxy` (the browser as a
    /// host of a rig: the pages at the rig's addresses).
    #[allow(dead_code)] // tests/pair.rs only.
    pub async fn start_via(trusted_spkis: &[&str], proxy: &Proxy) -> Browser {
        Self::start_with(&trusted_spkis.join(","), false, Some(proxy.url())).await
    }

    async fn start_with(trusted_spki: &str, dark: bool, proxy: Option<String>) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let driver = Driver::start(profile.path());
        let mut args = vec![
            "--headless=new".to_owned(),
            format!(
                "--user-data-dir={}",
                profile.path().join("chromium").display()
            ),
            format!("--ignore-certificate-errors-spki-list={trusted_spki}"),
            format!("--window-size={DESKTOP},{HEIGHT}"),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--hide-scrollbars".to_owned(),
            "--force-device-scale-factor=1".to_owned(),
            "--lang=en-US".to_owned(),
        ];
        if dark {
            args.push("--force-dark-mode".to_owned());
        }
        if let Some(proxy) = proxy {
            args.push(format!("--proxy-server={proxy}"));
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            // Chromium's sandbox refuses to run as root.
            args.push("--no-sandbox".to_owned());
        }
        let capabilities = json!({
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": {
                "pageLoad": STEP.as_millis() as u64,
                "script": STEP.as_millis() as u64,
                "implicit": 0,
            },
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = bounded(
            "starting chromium",
            ClientBuilder::new(connector)
                .capabilities(capabilities)
                .connect(&driver.url()),
        )
        .await
        .unwrap_or_else(|err| {
            panic!(
                "chromedriver could not start chromium: {err}\n{}",
                std::fs::read_to_string(&driver.log).unwrap_or_default()
            )
        });
        let browser = Browser {
            client: Some(client),
            driver,
            _profile: profile,
        };
        browser.set_width(DESKTOP).await;
        browser
    }

    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("the session is open")
    }

    /// The window the commands go to.
    #[allow(dead_code)] // tests/pair.rs only.
    pub async fn window(&self) -> WindowHandle {
        bounded("reading the window", self.client().window())
            .await
            .unwrap()
    }

    /// Opens a new window ([`DESKTOP`] px wide, blank) and makes it the
    /// one the commands go to; its handle. The windows stay open, and
    /// their pages running, side by side.
    #[allow(dead_code)] // tests/pair.rs only.
    pub async fn new_window(&self) -> WindowHandle {
        let opened = bounded("opening a window", self.client().new_window(false))
            .await
            .unwrap();
        self.switch_to(&opened.handle).await;
        self.set_width(DESKTOP).await;
        opened.handle
    }

    /// Makes `window` the one the commands go to (its page as it is: not
    /// reloaded).
    #[allow(dead_code)] // tests/pair.rs only.
    pub async fn switch_to(&self, window: &WindowHandle) {
        bounded(
            "switching windows",
            self.client().switch_to_window(window.clone()),
        )
        .await
        .unwrap();
    }

    /// Opens `url` and waits until it has loaded.
    pub async fn goto(&self, url: &str) {
        bounded(&format!("opening {url}"), self.client().goto(url))
            .await
            .unwrap_or_else(|err| panic!("opening {url}: {err}"));
    }

    /// The path of the page shown.
    pub async fn path(&self) -> String {
        bounded("reading the URL", self.client().current_url())
            .await
            .unwrap()
            .path()
            .to_owned()
    }

    pub async fn title(&self) -> String {
        bounded("reading the title", self.client().title())
            .await
            .unwrap()
    }

    /// The element `css` selects; fails the test if there is none.
    pub async fn find(&self, css: &str) -> Element {
        let found = bounded(
            &format!("finding {css}"),
            self.client().find(Locator::Css(css)),
        )
        .await;
        match found {
            Ok(element) => element,
            Err(err) => panic!("no element {css} on {}: {err}", self.path_now().await),
        }
    }

    /// How many elements `css` selects.
    pub async fn count(&self, css: &str) -> usize {
        bounded(
            &format!("finding {css}"),
            self.client().find_all(Locator::Css(css)),
        )
        .await
        .unwrap()
        .len()
    }

    /// The visible text of the element `css` selects. The live pages
    /// replace elements as updates arrive (live.js rebuilds the recent
    /// alerts): one found may be gone when it is read, and is found again.
    pub async fn text(&self, css: &str) -> String {
        const ATTEMPTS: usize = 10;
        for _ in 0..ATTEMPTS {
            let element = self.find(css).await;
            match bounded(&format!("reading {css}"), element.text()).await {
                Ok(text) => return text,
                Err(fantoccini::error::CmdError::Standard(err))
                    if err.error == fantoccini::error::ErrorStatus::StaleElementReference => {}
                Err(err) => panic!("reading {css}: {err}"),
            }
        }
        panic!("{css} was replaced while being read {ATTEMPTS} times in a row")
    }

    async fn path_now(&self) -> String {
        match tokio::time::timeout(STEP, self.client().current_url()).await {
            Ok(Ok(url)) => url.to_string(),
            _ => "the current page".to_owned(),
        }
    }

    /// Types `text` into the field `css` selects, after clearing it.
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        bounded(&format!("clearing {css}"), field.clear())
            .await
            .unwrap();
        bounded(&format!("typing into {css}"), field.send_keys(text))
            .await
            .unwrap();
    }

    /// Clicks the element `css` selects and waits until the page it leads
    /// to has loaded (a form's submit button: the answer to the POST).
    pub async fn click_and_wait(&self, css: &str) {
        let element = self.find(css).await;
        // A mark on the old document: gone once the next one replaced it.
        self.script("window.lbOldPage = true; return null").await;
        bounded(&format!("clicking {css}"), element.click())
            .await
            .unwrap();
        let loaded = "return !window.lbOldPage && document.readyState === 'complete'";
        bounded(&format!("the page after clicking {css}"), async {
            loop {
                // Errors while the document is replaced are expected.
                if let Ok(Value::Bool(true)) = self.client().execute(loaded, vec![]).await {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
    }

    /// Runs `body` (a function body with `return`) in the page.
    pub async fn script(&self, body: &str) -> Value {
        bounded("running a script", self.client().execute(body, vec![]))
            .await
            .unwrap_or_else(|err| panic!("script {body:?}: {err}"))
    }

    /// Makes the page's viewport `width` px wide (and [`HEIGHT`] high).
    pub async fn set_width(&self, width: u32) {
        self.set_viewport(width, HEIGHT).await;
    }

    /// Makes the viewport exactly `width` x `height` through the DevTools
    /// protocol (`Emulation.setDeviceMetricsOverride`: resizing the window
    /// is asynchronous and was seen not to take under load), as a phone
    /// below 500 px (the page's `<meta name="viewport">` then decides its
    /// layout width, as on a phone), and checks what the page sees.
    async fn set_viewport(&self, width: u32, height: u32) {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({
                "width": width,
                "height": height,
                "deviceScaleFactor": 1,
                "mobile": width < 500,
            }),
        )
        .await;
        let inner = self
            .script("return [window.innerWidth, window.innerHeight]")
            .await;
        assert_eq!(
            inner,
            json!([width, height]),
            "the page's viewport (is <meta name=viewport> there?)"
        );
    }

    /// Sends a DevTools protocol command through chromedriver.
    async fn cdp(&self, cmd: &'static str, params: Value) -> Value {
        bounded(
            cmd,
            self.client().issue_cmd(Cdp {
                cmd,
                params: params.clone(),
            }),
        )
        .await
        .unwrap_or_else(|err| panic!("{cmd} {params}: {err}"))
    }

    /// How far the page is wider than the viewport, in px (0: it fits).
    pub async fn overflow_x(&self) -> u64 {
        self.script("return Math.max(0, document.documentElement.scrollWidth - window.innerWidth)")
            .await
            .as_u64()
            .unwrap()
    }

    /// Saves a PNG of the whole page at `width` px to `dir/NAME-WIDTH.png`
    /// (the viewport is made as high as the page, then set back).
    pub async fn screenshot(&self, dir: &Path, name: &str, width: u32) -> PathBuf {
        self.set_width(width).await;
        let height = self
            .script("return document.documentElement.scrollHeight")
            .await
            .as_u64()
            .unwrap() as u32;
        self.set_viewport(width, height.max(HEIGHT)).await;
        let png = bounded("taking a screenshot", self.client().screenshot())
            .await
            .unwrap();
        self.set_width(width).await;
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join(format!("{name}-{width}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Ends the WebDriver session (chromium quits) and chromedriver.
    pub async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = tokio::time::timeout(STEP, client.close()).await;
        }
        if let Some(mut child) = self.driver.child.take() {
            kill_group(&mut child);
        }
    }
}

/// chromedriver's own command for a DevTools protocol call:
/// `POST /session/ID/goog/cdp/execute {"cmd", "params"}`.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        let session = session_id.expect("a command inside the session");
        base_url.join(&format!("session/{session}/goog/cdp/execute"))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        let body = json!({ "cmd": self.cmd, "params": self.params });
        (axum::http::Method::POST, Some(body.to_string()))
    }
}

/// Where the screenshots go: `target/screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is target/tmp")
        .join("screenshots")
}
