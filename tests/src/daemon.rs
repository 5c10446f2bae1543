//! The real `lb-ctl run` as a process in a namespace, for the integration
//! tests, the control-plane benchmark and the demo: its files
//! ([`NodeFiles`]), its start (waiting until the API answers, or failing with
//! its log), `kill -9`, restart and SIGTERM, and the CLI against it.
//!
//! The binary is given by the caller (`env!("CARGO_BIN_EXE_lb-ctl")` in
//! lb-ctl's tests and benches, `target/debug/lb-ctl` in xtask), so this
//! crate does not depend on lb-ctl.
use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{netns::Netns, rig::Rig};

/// How long a daemon may take to answer its first `status`.
pub const READY_WITHIN: Duration = Duration::from_secs(20);

/// Where one daemon keeps its files: its socket, alert log, output and
/// configuration in `dir`, its pinned program and maps in `pin_dir`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFiles {
    pub dir: PathBuf,
    pub pin_dir: PathBuf,
}

impl NodeFiles {
    /// A rig's daemon: files in the rig's scratch directory (removed with
    /// the rig), pins in `/sys/fs/bpf/<rig prefix>`.
    pub fn in_rig(rig: &Rig) -> Self {
        NodeFiles {
            dir: rig.dir().to_owned(),
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/{}", rig.prefix)),
        }
    }

    /// The API socket (`api_socket`).
    pub fn socket(&self) -> PathBuf {
        self.dir.join("lb.sock")
    }

    /// The alert log (`alert_log`).
    pub fn alert_log(&self) -> PathBuf {
        self.dir.join("alerts.jsonl")
    }

    /// The daemon's stdout and stderr.
    pub fn log(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }

    /// Where the configuration is written.
    pub fn config(&self) -> PathBuf {
        self.dir.join("lb.toml")
    }

    /// The configuration's `[node]` table for a daemon with these files.
    pub fn node_table(
        &self,
        name: &str,
        interfaces: &[&str],
        metrics: Option<SocketAddr>,
    ) -> String {
        let mut text = format!("[node]\nname = \"{name}\"\n{}", self.node_keys(interfaces));
        if let Some(metrics) = metrics {
            text.push_str(&format!("metrics = \"{metrics}\"\n"));
        }
        text
    }

    /// This node's `[nodes.NAME]` table in a plan for `lb-ctl cluster init`
    /// (the `[node]` table without its name).
    pub fn plan_node_table(&self, name: &str, interfaces: &[&str]) -> String {
        format!("[nodes.{name}]\n{}", self.node_keys(interfaces))
    }

    fn node_keys(&self, interfaces: &[&str]) -> String {
        let interfaces: Vec<String> = interfaces.iter().map(|i| format!("\"{i}\"")).collect();
        format!(
            "interfaces = [{}]\napi_socket = \"{}\"\nbpffs_dir = \"{}\"\nalert_log = \"{}\"\n",
            interfaces.join(", "),
            self.socket().display(),
            self.pin_dir.display(),
            self.alert_log().display(),
        )
    }
}

/// `bin cluster init --plan PLAN --out OUT`: both nodes' folders
/// (`OUT/NAME/lb.toml`, keys, TLS); fails with its message.
pub fn cluster_init(bin: &Path, plan: &Path, out: &Path) -> Result<()> {
    let init = Command::new(bin)
        .args(["cluster", "init", "--plan"])
        .arg(plan)
        .arg("--out")
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} cluster init", bin.display()))?;
    if !init.status.success() {
        bail!(
            "lb-ctl cluster init --plan {} failed ({}):\n{}",
            plan.display(),
            init.status,
            String::from_utf8_lossy(&init.stderr)
        );
    }
    share_tls(out)
}

/// On one host both nodes read the plan's one `tls_dir`: every server's
/// certificate and key go into every server's `tls` folder (a real pair
/// keeps each node's key on its node).
fn share_tls(out: &Path) -> Result<()> {
    let folders: Vec<PathBuf> = fs::read_dir(out)?
        .filter_map(|e| e.ok().map(|e| e.path().join("tls")))
        .filter(|p| p.is_dir())
        .collect();
    for from in &folders {
        for file in fs::read_dir(from)?.filter_map(Result::ok) {
            for to in folders.iter().filter(|t| *t != from) {
                let dest = to.join(file.file_name());
                if !dest.exists() {
                    fs::copy(file.path(), &dest)
                        .with_context(|| format!("copying {}", file.path().display()))?;
                }
            }
        }
    }
    Ok(())
}

/// A running `lb-ctl run`. Dropping it kills the daemon (`kill -9`) and
/// removes its pins, which detaches whatever it left attached and frees its
/// maps.
#[derive(Debug)]
pub struct DaemonProcess {
    bin: PathBuf,
    files: NodeFiles,
    config: PathBuf,
    child: Option<Child>,
}

impl DaemonProcess {
    /// Starts `bin run --config config` in `ns` (its network only: pins
    /// outlive it, see [`Netns::net_command`]), output to
    /// [`NodeFiles::log`], and waits until its API answers `status`.
    pub fn start(ns: &Netns, bin: &Path, files: NodeFiles, config: &Path) -> Result<Self> {
        Self::start_with(ns.net_command(bin), bin, files, config)
    }

    /// Like [`DaemonProcess::start`], through `command` (the binary, maybe
    /// behind a wrapper: `ip netns exec NS lb-ctl`), to which `run --config
    /// FILE` is added.
    pub fn start_with(
        command: Command,
        bin: &Path,
        files: NodeFiles,
        config: &Path,
    ) -> Result<Self> {
        let mut daemon = DaemonProcess {
            bin: bin.to_owned(),
            files,
            config: config.to_owned(),
            child: None,
        };
        daemon.spawn(command)?;
        Ok(daemon)
    }

    /// Starts the daemon again (after [`DaemonProcess::kill9`] or
    /// [`DaemonProcess::terminate`]; a daemon still running is killed
    /// first) and waits until it answers.
    pub fn restart(&mut self, ns: &Netns) -> Result<()> {
        self.kill9();
        self.spawn(ns.net_command(&self.bin))
    }

    fn spawn(&mut self, mut command: Command) -> Result<()> {
        let log_path = self.files.log();
        let log = fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let child = command
            .args(["run", "--config"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {command:?}"))?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_WITHIN;
        while Instant::now() < deadline {
            let answered = self
                .ctl()
                .arg("status")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success());
            if answered {
                return Ok(());
            }
            if let Some(status) = self.try_wait()? {
                bail!("lb-ctl run exited ({status}):\n{}", self.log_text());
            }
            thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "lb-ctl run did not answer within {} s:\n{}",
            READY_WITHIN.as_secs(),
            self.log_text()
        )
    }

    fn log_text(&self) -> String {
        fs::read_to_string(self.files.log()).unwrap_or_default()
    }

    /// Kills the daemon with SIGKILL and reaps it; its pins stay.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the daemon with SIGTERM (a clean stop) and waits for it (10 s
    /// at most: then it is killed and this fails).
    pub fn terminate(&mut self) -> Result<Option<ExitStatus>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        let pid = libc::pid_t::try_from(child.id()).context("the daemon's pid")?;
        // SAFETY: kill(2) on our own child, not yet reaped.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            let error = std::io::Error::last_os_error();
            let _ = child.kill();
            let _ = child.wait();
            bail!("SIGTERM to lb-ctl run ({pid}): {error}");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(Some(status));
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        bail!("lb-ctl run ({pid}) did not stop within 10 s of SIGTERM; killed")
    }

    /// The daemon's exit status if it has exited (on its own), without
    /// waiting; after that it counts as not running.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        let Some(child) = &mut self.child else {
            return Ok(None);
        };
        let status = child.try_wait()?;
        if status.is_some() {
            self.child = None;
        }
        Ok(status)
    }

    /// `lb-ctl --socket SOCKET`, to which the caller adds a command.
    pub fn ctl(&self) -> Command {
        let mut command = Command::new(&self.bin);
        command
            .arg("--socket")
            .arg(self.files.socket())
            .stdin(Stdio::null());
        command
    }

    /// Runs `lb-ctl ARGS` against this daemon; its standard output, or an
    /// error with its standard error when it fails.
    pub fn ctl_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.ctl().args(args).output()?;
        if !out.status.success() {
            anyhow::bail!(
                "lb-ctl {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `lb-ctl ARGS`, which must fail; its standard error.
    pub fn ctl_refused(&self, args: &[&str]) -> Result<String> {
        let out = self.ctl().args(args).output()?;
        if out.status.success() {
            anyhow::bail!("lb-ctl {} succeeded but should not have", args.join(" "));
        }
        Ok(String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// The same command as a person types it.
    pub fn ctl_line(&self) -> String {
        format!(
            "{} --socket {}",
            self.bin.display(),
            self.files.socket().display()
        )
    }

    /// `lb-ctl --json status`; `None` when the daemon does not answer.
    pub fn status_json(&self) -> Option<serde_json::Value> {
        let out = self.ctl().args(["--json", "status"]).output().ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The node's cluster role from its status (`"active"`, `"standby"`
    /// ...); `None` when it does not answer or runs no cluster.
    pub fn cluster_role(&self) -> Option<String> {
        let status = self.status_json()?;
        status["cluster"]["role"].as_str().map(str::to_owned)
    }

    /// The node's flow replication has caught up (a standby: the active's
    /// bulk copy applied; it is eligible for a requested failover only
    /// then).
    pub fn replication_caught_up(&self) -> bool {
        self.status_json()
            .is_some_and(|s| s["cluster"]["replication"]["caught_up"].as_bool() == Some(true))
    }

    /// The peer's heartbeats say it may take the group (a requested
    /// failover, failback or stop is accepted only then).
    pub fn peer_eligible(&self) -> bool {
        self.status_json()
            .is_some_and(|s| s["cluster"]["peer_eligible"].as_bool() == Some(true))
    }

    /// The alert log's text (empty before the first alert).
    pub fn alerts(&self) -> String {
        fs::read_to_string(self.files.alert_log()).unwrap_or_default()
    }

    /// The names of the alerts logged so far (`"failover"` ...), in order.
    pub fn alert_events(&self) -> Vec<String> {
        self.alerts()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter_map(|alert| alert["event"].as_str().map(str::to_owned))
            .collect()
    }

    /// The daemon's files.
    pub fn files(&self) -> &NodeFiles {
        &self.files
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        self.kill9();
        let _ = fs::remove_dir_all(&self.files.pin_dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_table_names_every_file() {
        let files = NodeFiles {
            dir: PathBuf::from("/run/x"),
            pin_dir: PathBuf::from("/sys/fs/bpf/x"),
        };
        assert_eq!(
            files.node_table("n1", &["ext0", "int0"], None),
            "[node]\nname = \"n1\"\ninterfaces = [\"ext0\", \"int0\"]\n\
             api_socket = \"/run/x/lb.sock\"\nbpffs_dir = \"/sys/fs/bpf/x\"\n\
             alert_log = \"/run/x/alerts.jsonl\"\n"
        );
        assert_eq!(
            files.node_table("n1", &["ext0"], Some("198.18.0.1:9650".parse().unwrap())),
            "[node]\nname = \"n1\"\ninterfaces = [\"ext0\"]\n\
             api_socket = \"/run/x/lb.sock\"\nbpffs_dir = \"/sys/fs/bpf/x\"\n\
             alert_log = \"/run/x/alerts.jsonl\"\nmetrics = \"198.18.0.1:9650\"\n"
        );
        assert_eq!(
            files.plan_node_table("lb2", &["ext0"]),
            "[nodes.lb2]\ninterfaces = [\"ext0\"]\n\
             api_socket = \"/run/x/lb.sock\"\nbpffs_dir = \"/sys/fs/bpf/x\"\n\
             alert_log = \"/run/x/alerts.jsonl\"\n"
        );
    }
}
