//! `cargo xtask demo`: the rig with real processes, up until Ctrl-C.
//! `cargo xtask demo --down` removes whatever a demo left behind (for example
//! after it was killed).
use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Stdio},
    sync::mpsc,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use lb_tests::rig::{self, LB_EXT_IFACE, LB_INT_IFACE, Rig, RigOptions};

use crate::{cargo, exec, require_root, root, setup};

const PREFIX: &str = "lbdemo";

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

    println!("[demo] creating namespaces and starting nginx backends");
    let mut rig = Rig::build(&RigOptions {
        prefix: Some(PREFIX.into()),
        backends: 3,
    })?;
    rig.start_nginx()?;

    println!(
        "[demo] attaching XDP to {LB_EXT_IFACE} and {LB_INT_IFACE} in {}",
        rig.lb.name()
    );
    let mut daemon = rig.lb.spawn(
        rig.lb
            .command(&lb_ctl)
            .args([
                "xdp",
                "attach",
                "--iface",
                LB_EXT_IFACE,
                "--iface",
                LB_INT_IFACE,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    )?;
    let stdout = wait_for_attach(&mut daemon)?;

    println!("[demo] checking that the client reaches every backend through the LB:");
    for backend in &rig.backends {
        let url = format!("http://{}/", backend.v4);
        let body = rig.curl(&url)?;
        println!("  curl {url:<24} -> {}", body.trim());
    }

    let (client, lb) = (rig.client.name(), rig.lb.name());
    let b1 = rig.backends[0].v4;
    let b2v6 = rig.backends[1].v6;
    println!(
        "\n{}\nTry, in another shell:\n\
         \x20 ip netns exec {client} curl http://{b1}/\n\
         \x20 ip netns exec {client} curl 'http://[{b2v6}]/'\n\
         \x20 ip netns exec {client} wrk -t1 -c10 -d5s http://{b1}/\n\
         \x20 ip -n {lb} link show {LB_EXT_IFACE}        # 'xdp' and the program id\n\
         \x20 bpftool prog show name lb_xdp\n\
         \x20 bpftool map dump name LB_STATS              # per-CPU packet counters\n\
         \nPress Ctrl-C to stop (the counters are printed, then everything is removed).\n\
         From another shell, `cargo xtask demo --down` removes a demo that was killed.",
        rig.describe()
    );

    let (tx, rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .context("installing the Ctrl-C handler")?;
    // Wait for Ctrl-C, unless lb-ctl dies first.
    loop {
        if rx.recv_timeout(Duration::from_millis(500)).is_ok() {
            break;
        }
        if let Some(status) = daemon.try_wait()? {
            bail!("lb-ctl left on its own ({status}); the rig is being removed");
        }
    }
    println!("\n[demo] stopping lb-ctl");
    terminate(&daemon);
    daemon.wait()?;
    for line in stdout.lines() {
        println!("  {}", line?);
    }
    drop(rig);
    println!("[demo] removed the namespaces and processes of {PREFIX}");
    Ok(())
}

pub fn down() -> Result<()> {
    let removed = rig::remove_by_prefix(PREFIX);
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

/// Reads lb-ctl's stdout until it says it is attached; returns the rest.
fn wait_for_attach(daemon: &mut Child) -> Result<BufReader<std::process::ChildStdout>> {
    let mut stdout = BufReader::new(daemon.stdout.take().expect("piped"));
    let mut line = String::new();
    loop {
        line.clear();
        if stdout.read_line(&mut line)? == 0 {
            let status = daemon.wait()?;
            bail!("lb-ctl could not attach the XDP program ({status}); see its log above");
        }
        print!("  lb-ctl: {line}");
        if line.starts_with("attached") {
            return Ok(stdout);
        }
    }
}

/// SIGTERM: lb-ctl prints its counters and detaches.
fn terminate(daemon: &Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
}
