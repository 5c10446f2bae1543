//! `cargo xtask demo`: the rig with real processes and the lb-ctl daemon,
//! up until Ctrl-C. `cargo xtask demo --down` removes whatever a demo left
//! behind (for example after it was killed).
use std::{fs, path::PathBuf, sync::mpsc, time::Duration};

use anyhow::{Context as _, Result, bail};
use lb_tests::{
    daemon::{DaemonProcess, NodeFiles},
    rig::{self, Rig, RigOptions, VIP_V4, VIP_V6},
};

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
    let files = NodeFiles {
        dir: PathBuf::from(RUN_DIR),
        pin_dir: PathBuf::from(PIN_DIR),
    };
    let config = files.config();
    let log = files.log();
    fs::write(&config, demo_config(&rig, &files))?;
    println!(
        "[demo] starting `lb-ctl run` in {} with {}",
        rig.lb.name(),
        config.display()
    );
    let mut daemon = DaemonProcess::start(&rig.lb, &lb_ctl, files, &config)?;

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
    let c = daemon.ctl_line();
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
    if let Err(error) = daemon.terminate() {
        eprintln!("[demo] stopping lb-ctl: {error:#}");
    }
    drop(daemon);
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
fn demo_config(rig: &Rig, files: &NodeFiles) -> String {
    let mut text = files.node_table("lbdemo", &[rig::LB_EXT_IFACE, rig::LB_INT_IFACE], None);
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
