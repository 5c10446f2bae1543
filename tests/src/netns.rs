//! One network namespace made by a rig, removed on Drop together with every
//! process still inside it.
use std::{
    ffi::OsStr,
    fs::File,
    io::Write as _,
    os::fd::AsRawFd,
    process::{Child, Command, Output, Stdio},
    thread,
};

use anyhow::{Context as _, Result, bail};

/// A named network namespace (`/run/netns/NAME`) that this process created.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace, with its loopback up.
    pub fn create(name: &str) -> Result<Self> {
        run(Command::new("ip").args(["netns", "add", name]))
            .with_context(|| format!("creating network namespace {name}"))?;
        let ns = Self {
            name: name.to_owned(),
        };
        ns.ip(["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS...`; fails with ip's own message.
    pub fn ip<I, S>(&self, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// A command that runs inside the namespace (`ip netns exec NAME PROGRAM`).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// A command that runs inside the namespace's network only
    /// (`nsenter --net`): unlike `ip netns exec` it keeps this process's
    /// mounts, so what it pins on /sys/fs/bpf outlives it (a daemon that
    /// must hand its pinned program to the next one).
    pub fn net_command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.name))
            .arg("--")
            .arg(program);
        cmd
    }

    /// Runs `program args...` inside the namespace and waits for it; fails
    /// unless it exits 0.
    pub fn exec<I, S>(&self, program: &str, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(self.command(program).args(args))
    }

    /// Starts a long-running process inside the namespace.
    pub fn spawn(&self, cmd: &mut Command) -> Result<Child> {
        cmd.stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {cmd:?} in {}", self.name))
    }

    /// Sets a sysctl inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.exec("sysctl", ["-qw", &format!("{key}={value}")])?;
        Ok(())
    }

    /// Loads an nftables script (`nft -f -`) inside the namespace, never in
    /// the host's: the rules go with the namespace. Fails with nft's message.
    pub fn nft(&self, script: &str) -> Result<()> {
        let mut child = self
            .command("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running nft in {} (is nftables installed?)", self.name))?;
        child
            .stdin
            .take()
            .context("nft's stdin")?
            .write_all(script.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "nft -f - in {} failed ({}): {}\n{script}",
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Runs `f` on a thread that has entered this namespace: sockets it opens,
    /// interface names it resolves and XDP attachments it makes are the
    /// namespace's. The calling thread's namespace is untouched.
    pub fn run_in<F, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> Result<T> + Send,
        T: Send,
    {
        let path = format!("/run/netns/{}", self.name);
        let file = File::open(&path).with_context(|| format!("opening {path}"))?;
        thread::scope(|scope| {
            scope
                .spawn(move || {
                    // SAFETY: setns on a valid namespace fd affects only this thread.
                    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        bail!(
                            "entering network namespace {path}: {}",
                            std::io::Error::last_os_error()
                        );
                    }
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Like [`Netns::run_in`], on a thread of its own that keeps running:
    /// join the handle for its result.
    pub fn spawn_thread<F, T>(&self, f: F) -> Result<thread::JoinHandle<Result<T>>>
    where
        F: FnOnce() -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let path = format!("/run/netns/{}", self.name);
        let file = File::open(&path).with_context(|| format!("opening {path}"))?;
        Ok(thread::spawn(move || {
            // SAFETY: setns on a valid namespace fd affects only this thread.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!(
                    "entering network namespace {path}: {}",
                    std::io::Error::last_os_error()
                );
            }
            f()
        }))
    }

    /// Kills every process inside the namespace.
    pub fn kill_all(&self) {
        kill_processes_in(&self.name);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        delete(&self.name);
    }
}

/// Kills the processes inside namespace `name` and deletes it. Used on Drop
/// and to sweep leftovers of runs that were killed before they could clean up.
pub fn delete(name: &str) {
    kill_processes_in(name);
    let _ = Command::new("ip")
        .args(["netns", "del", name])
        .stderr(Stdio::null())
        .status();
}

fn kill_processes_in(name: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() else {
        return;
    };
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        if let Ok(pid) = pid.parse::<i32>() {
            // SAFETY: plain kill(2) on a pid that lives in our namespace.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    // Reap what we can so that the namespace is released at once.
    for _ in 0..50 {
        let busy = Command::new("ip")
            .args(["netns", "pids", name])
            .output()
            .map(|o| !o.stdout.is_empty())
            .unwrap_or(false);
        if !busy {
            break;
        }
        thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Names of the namespaces on this host, as `ip netns list` gives them.
pub fn list() -> Vec<String> {
    Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs a command to completion; an error carries its stderr.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?} (is iproute2 installed? `cargo xtask setup`)"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}
