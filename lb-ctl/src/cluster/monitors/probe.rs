//! The monitors' checks (the edge): one function per kind, from the
//! monitor's settings and its timeout to `Ok(())` or why it failed. The ICMP
//! check is the health checks' own probe. `stall` is answered by the event
//! loop itself (how late it ran the check), not here.
use std::{net::SocketAddr, process::Stdio, time::Duration};

use futures_util::TryStreamExt as _;
use rtnetlink::packet_route::link::{LinkFlags, State};

use super::super::config::{Monitor, MonitorKind};
use crate::health::probe::icmp;

/// Runs one check of `monitor` within its timeout.
pub async fn check(monitor: &Monitor) -> Result<(), String> {
    let timeout = Duration::from_millis(monitor.timeout_ms);
    match monitor.kind {
        MonitorKind::Link => {
            let iface = monitor.interface.as_deref().unwrap_or_default();
            within(timeout, link(iface)).await
        }
        MonitorKind::Ip => ip(&monitor.targets, timeout).await,
        MonitorKind::Process => {
            let name = monitor.process.as_deref().unwrap_or_default();
            process(name)
        }
        MonitorKind::Exec => within(timeout, exec(&monitor.command)).await,
        MonitorKind::Stall => Err("stall monitors are answered by the event loop".into()),
    }
}

async fn within(
    timeout: Duration,
    check: impl Future<Output = Result<(), String>>,
) -> Result<(), String> {
    tokio::time::timeout(timeout, check)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} ms", timeout.as_millis())))
}

/// The interface has carrier (lower layer up) and is up.
pub async fn link(iface: &str) -> Result<(), String> {
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(|e| format!("rtnetlink: {e}"))?;
    let task = tokio::spawn(connection);
    let result = async {
        let msg = handle
            .link()
            .get()
            .match_name(iface.to_owned())
            .execute()
            .try_next()
            .await
            .map_err(|e| match e {
                rtnetlink::Error::NetlinkError(msg) if msg.raw_code() == -libc::ENODEV => {
                    format!("interface {iface} does not exist")
                }
                other => format!("interface {iface}: {other}"),
            })?
            .ok_or_else(|| format!("interface {iface} does not exist"))?;
        let flags = msg.header.flags;
        if !flags.contains(LinkFlags::Up) {
            return Err(format!("interface {iface} is down (administratively)"));
        }
        if !flags.contains(LinkFlags::LowerUp) {
            return Err(format!("interface {iface} has no carrier"));
        }
        let oper = msg.attributes.iter().find_map(|a| match a {
            rtnetlink::packet_route::link::LinkAttribute::OperState(s) => Some(*s),
            _ => None,
        });
        match oper {
            Some(State::Up | State::Unknown) | None => Ok(()),
            Some(other) => Err(format!("interface {iface} is {other:?}").to_lowercase()),
        }
    }
    .await;
    task.abort();
    result
}

/// At least one target answers an echo request.
pub async fn ip(targets: &[std::net::IpAddr], timeout: Duration) -> Result<(), String> {
    let probes = targets
        .iter()
        .map(|ip| icmp::probe(SocketAddr::new(*ip, 0), timeout));
    let results = futures_util::future::join_all(probes).await;
    if results.iter().any(Result::is_ok) {
        return Ok(());
    }
    let why: Vec<String> = targets
        .iter()
        .zip(results)
        .map(|(ip, r)| {
            format!(
                "{ip}: {}",
                r.err().map(|e| e.to_string()).unwrap_or_default()
            )
        })
        .collect();
    Err(format!("no target answers ({})", why.join("; ")))
}

/// A process of that name (as in /proc/PID/comm) runs.
pub fn process(name: &str) -> Result<(), String> {
    let entries = std::fs::read_dir("/proc").map_err(|e| format!("/proc: {e}"))?;
    let found = entries.flatten().any(|entry| {
        entry
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
            && std::fs::read_to_string(entry.path().join("comm"))
                .is_ok_and(|comm| comm.trim_end() == name)
    });
    if found {
        Ok(())
    } else {
        Err(format!("no process named {name:?} runs"))
    }
}

/// The command exits 0 (it is killed when the check times out).
pub async fn exec(command: &[String]) -> Result<(), String> {
    let (program, args) = command.split_first().ok_or("no command")?;
    let out = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().next().unwrap_or_default();
    Err(format!(
        "{program} exited with {}{}",
        out.status,
        if first.is_empty() {
            String::new()
        } else {
            format!(": {first}")
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec_monitor(command: &[&str], timeout_ms: u64) -> Monitor {
        let mut m: Monitor =
            toml::from_str("name = \"x\"\nkind = \"exec\"\ncommand = [\"true\"]\n").unwrap();
        m.command = command.iter().map(|s| s.to_string()).collect();
        m.timeout_ms = timeout_ms;
        m
    }

    #[tokio::test]
    async fn exec_is_normal_on_exit_0_and_says_why_otherwise() {
        assert_eq!(check(&exec_monitor(&["true"], 2_000)).await, Ok(()));
        let err = check(&exec_monitor(
            &["sh", "-c", "echo broken >&2; exit 3"],
            2_000,
        ))
        .await
        .unwrap_err();
        assert_eq!(err, "sh exited with exit status: 3: broken");
        let err = check(&exec_monitor(&["sleep", "5"], 100))
            .await
            .unwrap_err();
        assert_eq!(err, "no answer within 100 ms");
        let err = check(&exec_monitor(&["/nonexistent/x"], 1_000))
            .await
            .unwrap_err();
        assert!(err.starts_with("/nonexistent/x: No such file"), "{err}");
    }

    #[test]
    fn process_finds_this_test_and_not_a_made_up_name() {
        let me = std::fs::read_to_string("/proc/self/comm").unwrap();
        assert_eq!(process(me.trim_end()), Ok(()));
        assert_eq!(
            process("no-such-proc-x"),
            Err("no process named \"no-such-proc-x\" runs".into())
        );
    }

    #[tokio::test]
    async fn link_reports_loopback_up_and_an_unknown_interface() {
        assert_eq!(link("lo").await, Ok(()));
        assert_eq!(
            link("nope0").await,
            Err("interface nope0 does not exist".into())
        );
    }

    #[tokio::test]
    async fn ip_is_normal_when_one_target_answers() {
        let targets = ["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        assert_eq!(ip(&targets, Duration::from_secs(2)).await, Ok(()));
    }
}
