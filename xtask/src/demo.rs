//! `cargo xtask demo`: the rig with real processes and the lb-ctl daemon,
//! up until Ctrl-C. `cargo xtask demo --down` removes whatever a demo left
//! behind (for example after it was killed).
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use lb_tests::rig::{self, Rig, RigOptions, VIP_V4, VIP_V6};

use crate::{cargo, exec, require_root, root, setup};

const PREFIX: &str = "lbdemo";
const PIN_DIR: &str = "/sys/fs/bpf/lbdemo";
const RUN_DIR: &str = "/run/lbdemo";
const UDP_PORT: u16 = 5353;

pub fn up() -> Result<()> {
    require_root("demo")?;
    setup::run()?;
    if lb_tests::netns::list()
        .iter()
        .any(|n| n.starts_with(&format!("{PREFIX}-")))
    {
        bail!(
            "a demo is already up (or was killed without cleaning up): run `cargo xtask demo --down` first"
        );
    }
    println!("[demo] building lb-ctl (with the embedded XDP object)");
    exec(
        cargo().args(["build", "--package", "lb-ctl"]),
        "cargo build",
    )?;
    let lb_ctl = root().join("target/debug/lb-ctl");

    println!("[demo] creating namespaces, starting nginx and UDP responders");
    let mut rig = Rig::build(&RigOptions {
        prefix: Some(PREFIX.into()),
        backends: 4,
        ..Default::default()
    })?;
    rig.add_vips()?;
    rig.start_nginx()?;
    rig.start_udp(UDP_PORT)?;

    fs::create_dir_all(RUN_DIR)?;
    let config = Path::new(RUN_DIR).join("lb.toml");
    fs::write(&config, demo_config(&rig))?;
    println!(
        "[demo] starting `lb-ctl run` in {} with {}",
        rig.lb.name(),
        config.display()
    );
    let log = Path::new(RUN_DIR).join("daemon.log");
    let mut daemon = rig.lb.spawn(
        rig.lb
            .net_command(&lb_ctl)
            .args(["run", "--config"])
            .arg(&config)
            .stdout(fs::File::create(&log)?)
            .stderr(fs::File::create(&log)?),
    )?;
    let ctl = Ctl {
        bin: lb_ctl.clone(),
        socket: Path::new(RUN_DIR).join("lb.sock"),
    };
    wait_ready(&ctl, &mut daemon, &log)?;

    println!("[demo] checking the services through the VIPs:");
    for url in [format!("http://{VIP_V4}/"), format!("http://[{VIP_V6}]/")] {
        let bodies: Vec<String> = (0..6)
            .map(|_| rig.curl(&url).map(|b| b.trim().to_owned()))
            .collect::<Result<_>>()?;
        println!("  curl {url:<24} -> {}", bodies.join(" "));
    }
    let udp = rig.client.exec(
        "sh",
        [
            "-c",
            &format!("echo hello | socat -t1 - UDP:{VIP_V4}:{UDP_PORT}"),
        ],
    )?;
    println!(
        "  udp  {VIP_V4}:{UDP_PORT:<13} -> {}",
        String::from_utf8_lossy(&udp.stdout).trim()
    );

    let client = rig.client.name().to_owned();
    let c = ctl.prefix();
    let b1 = rig.backends[0].v4;
    let b4 = rig.backends[3].v4;
    println!(
        "\n{}\
         lb-ctl runs in {lb} (log: {log}); its configuration: {config}.\n\n\
         Try, in another shell:\n\
         \x20 {c} status\n\
         \x20 {c} service list\n\
         \x20 {c} backend list tcp/{VIP_V4}:80\n\
         \x20 ip netns exec {client} curl http://{VIP_V4}/\n\
         \x20 ip netns exec {client} curl 'http://[{VIP_V6}]/'\n\
         \x20 echo hello | ip netns exec {client} socat -t1 - UDP:{VIP_V4}:{UDP_PORT}\n\
         \x20 ip netns exec {client} wrk -t1 -c10 -d5s http://{VIP_V4}/\n\
         \x20 {c} stats --watch\n\
         \x20 {c} backend drain tcp/{VIP_V4}:80 {b1}:80\n\
         \x20 {c} backend add tcp/{VIP_V4}:80 {b4}:80\n\
         \x20 {c} alerts\n\
         \nPress Ctrl-C to stop (everything is removed).\n\
         From another shell, `cargo xtask demo --down` removes a demo that was killed.",
        rig.describe(),
        lb = rig.lb.name(),
        log = log.display(),
        config = config.display(),
    );

    let (tx, rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .context("installing the Ctrl-C handler")?;
    // Wait for Ctrl-C, unless the daemon dies first.
    let outcome = loop {
        if rx.recv_timeout(Duration::from_millis(500)).is_ok() {
            break Ok(());
        }
        if let Some(status) = daemon.try_wait()? {
            break Err(anyhow::anyhow!(
                "lb-ctl left on its own ({status}); see {}",
                log.display()
            ));
        }
    };
    println!("\n[demo] stopping");
    terminate(&daemon);
    let _ = daemon.wait();
    drop(rig);
    remove_leftovers();
    println!("[demo] removed the namespaces, processes and pinned program of {PREFIX}");
    outcome
}

pub fn down() -> Result<()> {
    let removed = rig::remove_by_prefix(PREFIX);
    remove_leftovers();
    if removed.is_empty() {
        println!("[demo] nothing to remove: no {PREFIX}-* namespace exists");
    } else {
        println!(
            "[demo] removed {} namespace(s) and the processes in them: {}",
            removed.len(),
            removed.join(" ")
        );
    }
    Ok(())
}

/// The pinned program and maps, and the run directory.
fn remove_leftovers() {
    let _ = fs::remove_dir_all(PIN_DIR);
    let _ = fs::remove_dir_all(RUN_DIR);
}

/// The demo's configuration: one service per protocol and family over the
/// first three backends (the fourth is there to be added).
fn demo_config(rig: &Rig) -> String {
    let mut text = format!(
        "[node]\nname = \"lbdemo\"\ninterfaces = [\"{}\", \"{}\"]\napi_socket = \"{RUN_DIR}/lb.sock\"\nbpffs_dir = \"{PIN_DIR}\"\nalert_log = \"{RUN_DIR}/alerts.jsonl\"\n",
        rig::LB_EXT_IFACE,
        rig::LB_INT_IFACE
    );
    for (protocol, port, health) in [
        (
            "tcp",
            80,
            "{ kind = \"http\", path = \"/\", interval_ms = 1000, timeout_ms = 500 }",
        ),
        (
            "udp",
            UDP_PORT,
            "{ kind = \"icmp\", interval_ms = 1000, timeout_ms = 500 }",
        ),
    ] {
        for v6 in [false, true] {
            let vip = if v6 {
                VIP_V6.to_string()
            } else {
                VIP_V4.to_string()
            };
            text.push_str(&format!(
                "\n[[services]]\nname = \"{protocol}{}\"\nvip = \"{vip}\"\nport = {port}\nprotocol = \"{protocol}\"\nmode = \"nat\"\nhealth = {health}\n",
                if v6 { "6" } else { "4" }
            ));
            for b in rig.backends.iter().take(3) {
                let addr = if v6 {
                    format!("[{}]:{port}", b.v6)
                } else {
                    format!("{}:{port}", b.v4)
                };
                text.push_str(&format!("\n[[services.backends]]\naddress = \"{addr}\"\n"));
            }
        }
    }
    text
}

struct Ctl {
    bin: PathBuf,
    socket: PathBuf,
}

impl Ctl {
    /// The command as a person types it.
    fn prefix(&self) -> String {
        format!("{} --socket {}", self.bin.display(), self.socket.display())
    }
}

fn wait_ready(ctl: &Ctl, daemon: &mut Child, log: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let ok = Command::new(&ctl.bin)
            .arg("--socket")
            .arg(&ctl.socket)
            .arg("status")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return Ok(());
        }
        if let Some(status) = daemon.try_wait()? {
            bail!(
                "lb-ctl run exited ({status}):\n{}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "lb-ctl run did not answer within 20 s; see {}",
        log.display()
    )
}

/// SIGTERM: the daemon stops cleanly.
fn terminate(daemon: &Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
}
