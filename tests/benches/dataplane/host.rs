//! The host side of the measurements: a server process in a namespace
//! (killed when dropped) and the wait for its listener, and the machine's
//! CPU time from /proc/stat, as the share busy (and in softirq) over a
//! window: other work on the machine skews every figure.
use std::{
    fs,
    process::{Child, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use lb_tests::netns::Netns;

/// A process in a namespace, killed when this is dropped.
pub(super) struct Background(Child);

impl Background {
    pub(super) fn spawn(ns: &Netns, program: &str, args: &[&str]) -> Result<Self> {
        let child = ns.spawn(
            ns.command(program)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit()),
        )?;
        Ok(Self(child))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(super) fn wait_for_listener(ns: &Netns, port: u16) -> Result<()> {
    let filter = format!("sport = :{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !ns.exec("ss", ["-Hltn", &filter])?.stdout.is_empty() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on port {port} in {} after 10 s", ns.name())
}

/// The machine's CPU time, from /proc/stat, in clock ticks.
pub(super) struct CpuTimes {
    busy: u64,
    softirq: u64,
    total: u64,
    cpus: u64,
}

impl CpuTimes {
    pub(super) fn read() -> Result<Self> {
        let stat = fs::read_to_string("/proc/stat")?;
        let mut cpus = 0;
        let mut times = None;
        for line in stat.lines() {
            if let Some(rest) = line.strip_prefix("cpu ") {
                let v: Vec<u64> = rest
                    .split_whitespace()
                    .map(|n| n.parse().unwrap_or(0))
                    .collect();
                // user nice system idle iowait irq softirq steal ...
                let total: u64 = v.iter().take(8).sum();
                let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
                times = Some((total - idle, v.get(6).copied().unwrap_or(0), total));
            } else if line.starts_with("cpu") {
                cpus += 1;
            }
        }
        let (busy, softirq, total) = times.context("no cpu line in /proc/stat")?;
        Ok(Self {
            busy,
            softirq,
            total,
            cpus,
        })
    }

    pub(super) fn since(&self, before: &CpuTimes) -> Cpu {
        let total = (self.total - before.total).max(1) as f64;
        Cpu {
            busy: (self.busy - before.busy) as f64 / total * 100.0,
            softirq: (self.softirq - before.softirq) as f64 / total * 100.0,
            cpus: self.cpus,
        }
    }
}

/// Share of the machine's CPU time over a window.
pub(super) struct Cpu {
    busy: f64,
    softirq: f64,
    cpus: u64,
}

impl std::fmt::Display for Cpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CPU busy {:.0} % of {} CPUs (softirq {:.0} %)",
            self.busy, self.cpus, self.softirq
        )
    }
}
