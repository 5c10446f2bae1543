//! `cargo xtask demo`: the rig as a pair (client, two LB nodes on shared
//! segments with two interconnects, nginx backends), configured by `lb-ctl
//! cluster init` from a plan, both `lb-ctl run` up until Ctrl-C, and the
//! web console on each node ([`console`]). It prints how to watch the status
//! and the VIP, how to cause a failover, and each console's address and
//! login. `cargo xtask demo --down` removes whatever a demo left behind (for
//! example after it was killed).
mod console;

use std::{
    fs,
    path::{Path, PathBuf},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use lb_tests::{
    daemon::{self, DaemonProcess, NodeFiles},
    netns::Netns,
    rig::{self, NODES, Rig, RigOptions, VIP_V4, VIP_V6},
};

use self::console::Console;
use crate::{cargo, exec, require_root, root, setup};

const PREFIX: &str = "lbdemo";
const RUN_DIR: &str = "/run/lbdemo";
const UDP_PORT: u16 = 5353;
/// How long the pair may take to elect lb1 once both daemons answer.
const ELECTED_WITHIN: Duration = Duration::from_secs(10);

/// Where node `name` pins its program and maps.
fn pin_dir(name: &str) -> PathBuf {
    PathBuf::from(format!("/sys/fs/bpf/{PREFIX}-{name}"))
}

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
    println!("[demo] building lb-ctl (with the embedded XDP object) and lb-console");
    exec(
        cargo().args(["build", "--package", "lb-ctl", "--package", "lb-console"]),
        "cargo build",
    )?;
    let lb_ctl = root().join("target/debug/lb-ctl");
    let lb_console = root().join("target/debug/lb-console");

    println!("[demo] creating namespaces, starting nginx and UDP responders");
    let mut rig = Rig::build(&RigOptions {
        prefix: Some(PREFIX.into()),
        backends: 4,
        pair: true,
        ..Default::default()
    })?;
    rig.start_nginx()?;
    // Every backend answers each datagram with its name, the datagram's
    // length and digest (tests/src/rig/udp.rs).
    rig.serve_udp(UDP_PORT)?;

    let run_dir = Path::new(RUN_DIR);
    let _ = fs::remove_dir_all(run_dir);
    fs::create_dir_all(run_dir)?;
    let files = NODES.map(|name| NodeFiles {
        dir: run_dir.join(name),
        pin_dir: pin_dir(name),
    });
    let plan = run_dir.join("plan.toml");
    fs::write(
        &plan,
        format!("{}{}", rig.cluster_plan(run_dir, &files), services(&rig)),
    )?;
    println!(
        "[demo] lb-ctl cluster init --plan {} --out {RUN_DIR}",
        plan.display()
    );
    daemon::cluster_init(&lb_ctl, &plan, run_dir)?;

    let [lb1, lb2] = &rig.nodes[..] else {
        bail!("the rig has {} nodes, not a pair", rig.nodes.len());
    };
    let namespaces: [&Netns; 2] = [&lb1.ns, &lb2.ns];
    let mut daemons = Vec::with_capacity(2);
    for ((ns, files), name) in namespaces.iter().zip(files).zip(NODES) {
        let config = files.dir.join("lb.toml");
        println!(
            "[demo] starting `lb-ctl run` in {} with {}",
            ns.name(),
            config.display()
        );
        daemons.push(
            DaemonProcess::start(ns, &lb_ctl, files, &config)
                .with_context(|| format!("starting {name}"))?,
        );
    }
    let start = Instant::now();
    while !(daemons[0].cluster_role().as_deref() == Some("active")
        && daemons[1].cluster_role().as_deref() == Some("standby"))
    {
        if start.elapsed() > ELECTED_WITHIN {
            bail!(
                "the pair did not elect lb1 within {ELECTED_WITHIN:?}: lb1 {:?}, lb2 {:?}",
                daemons[0].cluster_role(),
                daemons[1].cluster_role()
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
    println!("[demo] lb1 is active, lb2 standby");

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

    // The consoles: one administrator password for both, drawn here.
    let password = console::draw_password()?;
    let mut consoles = Vec::with_capacity(2);
    for ((node, peer), name) in [(lb1, lb2), (lb2, lb1)].into_iter().zip(NODES) {
        println!(
            "[demo] starting lb-console in {} on {}:{}",
            node.ns.name(),
            node.ext_v4,
            console::PORT
        );
        let console = Console::start(
            name,
            &node.ns,
            &lb_console,
            &run_dir.join(name),
            node.ext_v4,
            peer.ext_v4,
            &password,
        )
        .with_context(|| format!("starting the console of {name}"))?;
        console::check_from(&rig.client, &console)?;
        println!(
            "  curl {}login -> the login page (from {})",
            console.url(),
            rig.client.name()
        );
        consoles.push(console);
    }

    println!("\n{}", instructions(&rig, &daemons, namespaces));
    println!("\n{}", console_instructions(&rig, &consoles, &password));
    println!(
        "\nPress Ctrl-C to stop (everything is removed).\n\
         From another shell, `cargo xtask demo --down` removes a demo that was killed."
    );

    let (tx, rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .context("installing the Ctrl-C handler")?;
    // Wait for Ctrl-C; a daemon that dies (kill -9) is started again.
    let outcome = loop {
        if rx.recv_timeout(Duration::from_millis(500)).is_ok() {
            break Ok(());
        }
        if let Err(error) = restart_dead(&mut daemons, namespaces) {
            break Err(error);
        }
        if let Err(error) = restart_dead_consoles(&mut consoles, namespaces) {
            break Err(error);
        }
    };
    println!("\n[demo] stopping");
    for console in &mut consoles {
        if let Err(error) = console.terminate() {
            eprintln!("[demo] stopping lb-console: {error:#}");
        }
    }
    drop(consoles);
    for daemon in &mut daemons {
        if let Err(error) = daemon.terminate() {
            eprintln!("[demo] stopping lb-ctl: {error:#}");
        }
    }
    drop(daemons);
    drop(rig);
    remove_leftovers();
    println!("[demo] removed the namespaces, processes and pinned programs of {PREFIX}");
    outcome
}

/// Starts again each daemon that has exited, and says so.
fn restart_dead(daemons: &mut [DaemonProcess], namespaces: [&Netns; 2]) -> Result<()> {
    for ((daemon, ns), name) in daemons.iter_mut().zip(namespaces).zip(NODES) {
        if let Some(status) = daemon.try_wait()? {
            println!(
                "[demo] lb-ctl of {name} exited ({status}); starting it again (it joins as standby)"
            );
            daemon
                .restart(ns)
                .with_context(|| format!("starting lb-ctl of {name} again"))?;
            println!("[demo] lb-ctl of {name} runs again");
        }
    }
    Ok(())
}

/// Starts again each console that has exited, and says so.
fn restart_dead_consoles(consoles: &mut [Console], namespaces: [&Netns; 2]) -> Result<()> {
    for (console, ns) in consoles.iter_mut().zip(namespaces) {
        if let Some(status) = console.try_wait()? {
            println!(
                "[demo] lb-console of {} exited ({status}); starting it again",
                console.node
            );
            console
                .restart(ns)
                .with_context(|| format!("starting lb-console of {} again", console.node))?;
        }
    }
    Ok(())
}

/// Where the consoles are, the login, and how to reach them from this host.
fn console_instructions(rig: &Rig, consoles: &[Console], password: &str) -> String {
    let client = rig.client.name();
    let mut text = format!(
        "The web consoles (HTTPS, each with a self-signed certificate made at start; log: \
         {RUN_DIR}/NODE/console.log, audit trail: console-audit.jsonl there):\n"
    );
    for console in consoles {
        text.push_str(&format!(
            "  {}  {:<26} certificate SHA-256 {}\n",
            console.node,
            console.url(),
            console.fingerprint
        ));
    }
    let first = &consoles[0];
    text.push_str(&format!(
        "  login: user {user}, password {password}\n\n\
         They listen on the nodes' client-side addresses, inside the demo's namespaces; from this host:\n\
         \x20 ip netns exec {client} curl -sk {url}login\n\
         For a browser on this host, forward a loopback port to {node}'s console (Ctrl-C ends it),\n\
         then open https://localhost:{port}/ and accept the certificate whose fingerprint is above:\n\
         \x20 socat TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork EXEC:'ip netns exec {client} socat STDIO TCP:{addr}:{port}'",
        user = console::USER,
        url = first.url(),
        node = first.node,
        addr = first.addr,
        port = console::PORT,
    ));
    text
}

/// What to try, every command as it is typed.
fn instructions(rig: &Rig, daemons: &[DaemonProcess], namespaces: [&Netns; 2]) -> String {
    let client = rig.client.name();
    let [c1, c2] = [daemons[0].ctl_line(), daemons[1].ctl_line()];
    let [ns1, ns2] = namespaces.map(Netns::name);
    let b1 = rig.backends[0].v4;
    let b4 = rig.backends[3].v4;
    format!(
        "{describe}\n\
         lb1 and lb2 run `lb-ctl run` with the files `lb-ctl cluster init` wrote in \
         {RUN_DIR}/lb1 and {RUN_DIR}/lb2 (log: daemon.log, alerts: alerts.jsonl there).\n\n\
         Watch the VIP answer, in a shell of its own (10 minutes at most; Ctrl-C ends it):\n\
         \x20 ip netns exec {client} sh -c 'for i in $(seq 1200); do echo \"$(date +%T) $(curl -s --max-time 1 http://{VIP_V4}/ || echo no answer)\"; sleep 0.5; done'\n\n\
         Each node's status (cluster role, peer, interconnects, monitors):\n\
         \x20 {c1} status\n\
         \x20 {c2} status\n\n\
         Cause failovers, in this order (the active node is the one whose status says `active`):\n\
         \x20 # on request: lb1, active, hands the group (VIPs, gateway) to lb2, which gives it back\n\
         \x20 {c1} failover\n\
         \x20 {c2} failback\n\
         \x20 # cut lb1 from the clients: its link monitor fails within a second and lb2 takes over;\n\
         \x20 # with the link back, lb1 stays standby (no automatic failback) until asked\n\
         \x20 ip -n {ns1} link set ext0 down\n\
         \x20 ip -n {ns1} link set ext0 up\n\
         \x20 {c2} failback\n\
         \x20 # kill -9 the active daemon: lb2 takes over; lb1 stays fenced until the demo has started\n\
         \x20 # its daemon again, as standby ({ns2} for lb2 when lb2 is active)\n\
         \x20 kill -9 $(ip netns pids {ns1})\n\
         \x20 # stop lb2's cluster service (lb2 is active now): it hands the group to lb1 first,\n\
         \x20 # then shows Offline on both nodes; start brings it back as standby\n\
         \x20 {c2} cluster stop\n\
         \x20 {c1} status\n\
         \x20 {c2} cluster start\n\n\
         The services (changed on the active node only, lb1 until a failover: the standby refuses\n\
         and the active pushes every change to it; `status` on each shows the settings' generation):\n\
         \x20 {c1} service list\n\
         \x20 {c1} backend list tcp/{VIP_V4}:80\n\
         \x20 ip netns exec {client} curl 'http://[{VIP_V6}]/'\n\
         \x20 echo hello | ip netns exec {client} socat -t1 - UDP:{VIP_V4}:{UDP_PORT}\n\
         \x20 ip netns exec {client} wrk -t1 -c10 -d5s http://{VIP_V4}/\n\
         \x20 {c1} stats --watch\n\
         \x20 {c1} backend drain tcp/{VIP_V4}:80 {b1}:80\n\
         \x20 {c1} backend add tcp/{VIP_V4}:80 {b4}:80\n\
         \x20 {c2} backend list tcp/{VIP_V4}:80\n\
         \x20 {c1} alerts\n\
         \x20 # on the active node: push the settings to the standby now (after a missed push)\n\
         \x20 {c1} sync",
        describe = rig.describe(),
    )
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

/// The pinned programs and maps, and the run directory.
fn remove_leftovers() {
    for name in NODES {
        let _ = fs::remove_dir_all(pin_dir(name));
    }
    // Where the one-node demo pinned.
    let _ = fs::remove_dir_all(format!("/sys/fs/bpf/{PREFIX}"));
    let _ = fs::remove_dir_all(RUN_DIR);
}

/// The demo's services, the same on both nodes: one per protocol and
/// family over the first three backends (the fourth is there to be added).
fn services(rig: &Rig) -> String {
    let mut text = String::new();
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
