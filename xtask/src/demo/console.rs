//! The web console of each demo node: `lb-console` inside the node's
//! network namespace (`nsenter --net`, like its daemon), on the node's own
//! client-side address, port 50453, with a self-signed certificate it
//! makes at start, and an administrator whose password the demo draws and
//! prints. Its files are beside the daemon's in `/run/lbdemo/NODE/`.
use std::{
    fs,
    io::Write as _,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use lb_tests::netns::Netns;

/// The console's port (lb-console's default, `DEFAULT_LISTEN`).
pub const PORT: u16 = 50453;
/// The administrator the demo sets up.
pub const USER: &str = "admin";
/// How long a console gets to listen, and to stop on SIGTERM.
const WITHIN: Duration = Duration::from_secs(10);

/// A password of 16 characters from /dev/urandom (80 bits), in groups of
/// four, of letters and digits that cannot be taken for one another.
pub fn draw_password() -> Result<String> {
    let mut bytes = [0u8; 16];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .context("reading /dev/urandom for the console's password")?;
    Ok(password_of(&bytes))
}

fn password_of(bytes: &[u8; 16]) -> String {
    // No l, o, 0 or 1; 32 characters, so `b % 32` picks each equally often.
    const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut password = String::with_capacity(19);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            password.push('-');
        }
        password.push(char::from(ALPHABET[usize::from(b % 32)]));
    }
    password
}

/// One node's console process.
pub struct Console {
    pub node: &'static str,
    pub addr: Ipv4Addr,
    /// The other node's console address (`--peer-console`).
    peer: Ipv4Addr,
    bin: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
    /// The SHA-256 fingerprint of its certificate, as it logged it.
    pub fingerprint: String,
}

impl Console {
    /// Writes the credentials (`lb-console set-password`) in `dir` and
    /// starts the console in `ns` on `addr`; waits until it listens.
    pub fn start(
        node: &'static str,
        ns: &Netns,
        bin: &Path,
        dir: &Path,
        addr: Ipv4Addr,
        peer: Ipv4Addr,
        password: &str,
    ) -> Result<Console> {
        let credentials = dir.join("console.toml");
        let mut set = Command::new(bin)
            .args(["set-password", "--user", USER, "--credentials"])
            .arg(&credentials)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {} set-password", bin.display()))?;
        writeln!(
            set.stdin.take().context("set-password's stdin")?,
            "{password}"
        )?;
        let out = set.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "lb-console set-password for {node} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let mut console = Console {
            node,
            addr,
            peer,
            bin: bin.to_owned(),
            dir: dir.to_owned(),
            child: None,
            fingerprint: String::new(),
        };
        console.spawn(ns)?;
        Ok(console)
    }

    /// `https://ADDR:50453/`.
    pub fn url(&self) -> String {
        format!("https://{}:{PORT}/", self.addr)
    }

    fn log(&self) -> PathBuf {
        self.dir.join("console.log")
    }

    fn spawn(&mut self, ns: &Netns) -> Result<()> {
        let log_path = self.log();
        let log = fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let child = ns
            .net_command(&self.bin)
            .arg("--listen")
            .arg(format!("{}:{PORT}", self.addr))
            .arg("--credentials")
            .arg(self.dir.join("console.toml"))
            .arg("--audit")
            .arg(self.dir.join("console-audit.jsonl"))
            // The node's daemon (its `api_socket`, in the node's directory).
            .arg("--socket")
            .arg(self.dir.join("lb.sock"))
            // The other node's console, linked from a standby's pages.
            .arg("--peer-console")
            .arg(format!("https://{}:{PORT}/", self.peer))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting lb-console in {}", ns.name()))?;
        self.child = Some(child);
        let deadline = Instant::now() + WITHIN;
        loop {
            let text = fs::read_to_string(&log_path).unwrap_or_default();
            if text.contains("listening on https://") {
                self.fingerprint = fingerprint_in(&text).unwrap_or_default();
                return Ok(());
            }
            if let Some(status) = self.try_wait()? {
                bail!("lb-console of {} exited ({status}):\n{text}", self.node);
            }
            if Instant::now() > deadline {
                self.kill();
                bail!(
                    "lb-console of {} did not listen within {} s:\n{text}",
                    self.node,
                    WITHIN.as_secs()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the console again (after it exited).
    pub fn restart(&mut self, ns: &Netns) -> Result<()> {
        self.kill();
        self.spawn(ns)
    }

    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        match &mut self.child {
            Some(child) => Ok(child.try_wait()?),
            None => Ok(None),
        }
    }

    /// Stops the console with SIGTERM (it lets open connections finish for
    /// a few seconds) and waits for it; killed after 10 s.
    pub fn terminate(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = libc::pid_t::try_from(child.id())?;
        // SAFETY: kill(2) on the child this demo started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + WITHIN;
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "lb-console of {} did not stop within {} s: killed",
                    self.node,
                    WITHIN.as_secs()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The value of the `fingerprint=` field in the console's log.
fn fingerprint_in(log: &str) -> Option<String> {
    log.split("fingerprint=")
        .nth(1)?
        .split_whitespace()
        .next()
        .map(str::to_owned)
}

/// Fetches the console's login page from the client's namespace (curl,
/// the certificate not checked: it is self-signed) and checks it is one.
pub fn check_from(client: &Netns, console: &Console) -> Result<()> {
    let url = format!("{}login", console.url());
    let out = client
        .exec("curl", ["-sk", "--max-time", "5", &url])
        .with_context(|| format!("fetching {url} from {}", client.name()))?;
    let page = String::from_utf8_lossy(&out.stdout);
    if !page.contains("<title>Log in · lb console</title>") {
        bail!("{url} did not answer with the login page: {page}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_four_groups_of_four_unambiguous_characters() {
        let password = password_of(&[0, 1, 2, 31, 32, 33, 255, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
        assert_eq!(password, "abc9-ab9i-jkmn-pqrs");
        assert!(!password.contains(['0', 'o', '1', 'l']));
        assert_eq!(password.chars().filter(|c| *c != '-').count(), 16);
    }

    #[test]
    fn reads_the_fingerprint_the_console_logs() {
        let log = "2026-11-25T17:00:00Z  WARN lb_console: no --cert/--key given: using a \
                   self-signed certificate for vm (kept in memory only); check its SHA-256 \
                   fingerprint in the browser fingerprint=AB:CD:EF\n\
                   2026-11-25T17:00:00Z  INFO lb_console: lb console 0.1.0 listening on \
                   https://198.18.0.1:50453/ addr=198.18.0.1:50453\n";
        assert_eq!(fingerprint_in(log).as_deref(), Some("AB:CD:EF"));
        assert_eq!(fingerprint_in("no such field"), None);
    }
}
