//! Flow replication with real daemons (issue 11): the pair rig (client, two
//! nodes, nginx backends behind the floating gateway, a NAT or DSR service), long
//! rate-limited TCP downloads and idle keep-alive connections through the
//! VIP, a backend added meanwhile (so Maglev alone would move about a third
//! of them to it, and the new backend would reset them), then `lb-ctl
//! failover` and a `kill -9` of the new active. Every download completes
//! with every byte (size and SHA-256), every idle connection answers again
//! from the same backend: the standby held the flows, with their backends,
//! before it took over.
use std::{
    fs,
    io::{BufRead as _, BufReader, Read as _},
    path::PathBuf,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use lb_tests::{
    daemon::{DaemonProcess, NodeFiles},
    rig::{NODES, Rig, RigOptions, VIP_V4},
    wait::wait_for,
};
use sha2::{Digest as _, Sha256};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lb-ctl"))
}

/// Concurrent downloads and idle keep-alive connections.
const DOWNLOADS: usize = 16;
const IDLE: usize = 8;
/// Each download's size and rate: about 30 s each, long enough for both
/// takeovers to happen in the middle (the client's and the backends' ARP
/// entries may take seconds to follow the floating IPs).
const SIZE: usize = 6 << 20;
const RATE: &str = "200k";

/// The file every backend serves: the same bytes everywhere (a flow sent to
/// another backend is reset by it, not served the same bytes).
fn content() -> Vec<u8> {
    let mut out = Vec::with_capacity(SIZE);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while out.len() < SIZE {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(SIZE);
    out
}

/// The service (`mode`: nat or dsr) with every backend but the last (added
/// during the test).
fn plan(rig: &Rig, dir: &std::path::Path, files: &[NodeFiles; 2], mode: &str) -> String {
    let mut plan = rig.cluster_plan(dir, files);
    plan.push_str(&format!(
        "\n[[services]]\nname = \"web\"\nvip = \"{VIP_V4}\"\nport = 80\nprotocol = \"tcp\"\nmode = \"{mode}\"\n"
    ));
    for backend in &rig.backends[..rig.backends.len() - 1] {
        plan.push_str(&format!(
            "\n[[services.backends]]\naddress = \"{}:80\"\n",
            backend.v4
        ));
    }
    plan
}

/// The node's flow replication status.
fn replication(node: &DaemonProcess) -> serde_json::Value {
    node.status_json()
        .map(|s| s["cluster"]["replication"].clone())
        .unwrap_or_default()
}

/// Packets the node forwarded for the service, both ways.
fn service_packets(node: &DaemonProcess) -> u64 {
    node.ctl_ok(&["--json", "backend", "list"])
        .ok()
        .and_then(|out| serde_json::from_str::<serde_json::Value>(&out).ok())
        .and_then(|list| list[0]["traffic"]["packets"].as_u64())
        .unwrap_or(0)
}

fn settings_generation(node: &DaemonProcess) -> Option<u64> {
    node.status_json()?["generation"].as_u64()
}

#[test]
fn nat_downloads_and_idle_connections_survive_failover_and_kill_with_a_backend_added() -> Result<()>
{
    downloads_and_idle_connections_survive("nat")
}

/// DSR: the backends answer the client themselves (the VIP on their
/// loopback, through the floating gateway's routing); the flows the new
/// active forwards must still reach the backend that holds the connection.
#[test]
fn dsr_downloads_and_idle_connections_survive_failover_and_kill_with_a_backend_added() -> Result<()>
{
    downloads_and_idle_connections_survive("dsr")
}

/// One scenario at a time: two at once on a small machine slow the traffic
/// through the new active past the waits.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn downloads_and_idle_connections_survive(mode: &str) -> Result<()> {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut rig = Rig::build(&RigOptions {
        pair: true,
        ..Default::default()
    })?;
    rig.start_nginx()?;
    if mode == "dsr" {
        rig.backends_hold_vips()?;
    }
    let dir = rig.dir().to_owned();
    let data = content();
    let want = Sha256::digest(&data);
    for backend in &rig.backends {
        fs::write(dir.join(&backend.name).join("www/data"), &data)?;
    }
    let files = NODES.map(|name| rig.node_files(&dir, name));
    let plan_file = dir.join("plan.toml");
    fs::write(&plan_file, plan(&rig, &dir, &files, mode))?;
    lb_tests::daemon::cluster_init(&bin(), &plan_file, &dir)?;
    let [f1, f2] = files;
    let lb1 = DaemonProcess::start(&rig.nodes[0].ns, &bin(), f1, &dir.join("lb1/lb.toml"))?;
    let mut lb2 = DaemonProcess::start(&rig.nodes[1].ns, &bin(), f2, &dir.join("lb2/lb.toml"))?;
    wait_for("lb1 active, lb2 standby", Duration::from_secs(5), || {
        lb1.cluster_role().as_deref() == Some("active")
            && lb2.cluster_role().as_deref() == Some("standby")
    })?;
    wait_for("lb2 caught up", Duration::from_secs(5), || {
        lb2.replication_caught_up()
    })
    .with_context(|| format!("lb1: {}\nlb2: {}", replication(&lb1), replication(&lb2)))?;
    wait_for("the VIP answers", Duration::from_secs(5), || {
        rig.curl(&format!("http://{VIP_V4}/")).is_ok()
    })?;

    // The connections, through lb1.
    let url = format!("http://{VIP_V4}/data");
    let mut downloads: Vec<(PathBuf, Child)> = Vec::new();
    for i in 0..DOWNLOADS {
        let out = dir.join(format!("download-{i}"));
        let child = rig.client.spawn(
            rig.client
                .command("curl")
                .args(["-sS", "--fail", "--max-time", "60", "--limit-rate", RATE])
                .arg("-o")
                .arg(&out)
                .arg(&url)
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        )?;
        downloads.push((out, child));
    }
    let trigger = dir.join("idle-go");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/keepalive.py");
    let mut idle = rig.client.spawn(
        rig.client
            .command("python3")
            .arg(&script)
            .args([VIP_V4.to_string(), IDLE.to_string()])
            .arg(&trigger)
            .arg("60")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    )?;
    let mut idle_out = BufReader::new(idle.stdout.take().context("the script's stdout")?);
    let mut line = String::new();
    idle_out.read_line(&mut line)?;
    ensure!(line.trim() == "ready", "the idle connections: {line:?}");
    std::thread::sleep(Duration::from_millis(500));

    // A backend added: Maglev now sends about a third of these flows to it.
    let added = rig.backends.last().context("backends")?;
    lb1.ctl_ok(&[
        "backend",
        "add",
        &format!("tcp/{VIP_V4}:80"),
        &format!("{}:80", added.v4),
    ])?;
    let generation = settings_generation(&lb1).context("lb1's generation")?;
    wait_for("lb2 holds the new settings", Duration::from_secs(5), || {
        settings_generation(&lb2) == Some(generation)
    })?;
    std::thread::sleep(Duration::from_millis(500));

    wait_for("lb1 hears lb2 eligible", Duration::from_secs(5), || {
        lb1.peer_eligible()
    })?;
    // Failover on request: lb2 takes the flows over.
    let started = Instant::now();
    lb1.ctl_ok(&["failover"])?;
    wait_for("lb2 active", Duration::from_secs(5), || {
        lb2.cluster_role().as_deref() == Some("active")
            && lb1.cluster_role().as_deref() == Some("standby")
    })?;
    // The connections go on through lb2 (with its Maglev table, a third
    // of them would go to the new backend, which resets them). DSR: the
    // client's acknowledgements only (fewer: the data is coalesced).
    let before = service_packets(&lb2);
    let enough = if mode == "dsr" { 200 } else { 1000 };
    wait_for("traffic through lb2", Duration::from_secs(25), || {
        service_packets(&lb2) > before + enough
    })?;
    assert_eq!(replication(&lb2)["stream"], "sending");
    assert_eq!(replication(&lb1)["stream"], "receiving");
    // lb1, standby now, gets lb2's flows (a bulk copy), then lb2 dies.
    wait_for("lb1 caught up with lb2", Duration::from_secs(10), || {
        lb1.replication_caught_up()
    })?;
    std::thread::sleep(Duration::from_millis(500));
    lb2.kill9();
    wait_for("lb1 active again", Duration::from_secs(5), || {
        lb1.cluster_role().as_deref() == Some("active")
    })?;
    eprintln!(
        "failover and kill -9 done {:?} after the failover request",
        started.elapsed()
    );
    fs::write(&trigger, b"go")?;

    // Every download complete, byte for byte; every idle connection alive.
    let mut broken = Vec::new();
    for (i, (out, mut child)) in downloads.into_iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(70);
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                break child.wait()?;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut stderr = String::new();
        if let Some(mut err) = child.stderr.take() {
            err.read_to_string(&mut stderr)?;
        }
        let got = fs::read(&out).unwrap_or_default();
        if !status.success() || got.len() != SIZE || Sha256::digest(&got) != want {
            broken.push(format!(
                "download {i}: {status}, {} of {SIZE} bytes, {}",
                got.len(),
                stderr.trim()
            ));
        }
    }
    line.clear();
    idle_out.read_line(&mut line)?;
    let _ = idle.wait();
    let results: Vec<serde_json::Value> =
        serde_json::from_str(line.trim()).with_context(|| format!("the idle script: {line:?}"))?;
    ensure!(results.len() == IDLE, "{results:?}");
    for (i, r) in results.iter().enumerate() {
        if r.get("error").is_some() || r["first"] != r["second"] {
            broken.push(format!("idle connection {i}: {r}"));
        }
    }
    let status = replication(&lb1);
    eprintln!("lb1's replication after the takeover: {status}");
    if !broken.is_empty() {
        bail!(
            "{} of {} connections broke:\n{}",
            broken.len(),
            DOWNLOADS + IDLE,
            broken.join("\n")
        );
    }
    Ok(())
}
