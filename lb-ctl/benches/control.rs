//! The control-plane benchmark: `cargo xtask bench control` (which runs this
//! with `cargo bench -p lb-ctl --bench control`). Prints a table and writes
//! `target/bench/control.json`:
//!
//! - `maglev_build_ms_1000_backends`: building one Maglev table (65,537
//!   slots) for 1,000 equal backends, median of 20 builds.
//! - `change_to_forwarding_ms`: in the rig with the real daemon, from the
//!   API call that adds a backend to the first packet of a new flow reaching
//!   that backend (a UDP receiver in the backend's namespace); a client sends
//!   a new flow every ~50 us meanwhile. Median of 20 (the backend is removed
//!   again between rounds).
//! - `daemon_restart_gap_ms`: one UDP flow sends a numbered datagram every
//!   1 ms while the daemon is killed (`kill -9`) and started again; the
//!   delay between two consecutive datagrams is the time between their
//!   arrivals less the time between their sends; the figure is how much the
//!   largest delay from the kill through the restart exceeds the largest in
//!   the quiet half second before (what scheduling alone adds), target 0,
//!   with the datagrams lost.
//!
//! Needs root.
use std::{
    fs,
    net::{SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use lb_ctl::{
    api::{Applied, Change},
    balancer::BackendState,
    client::Client,
    config::BackendConfig,
    maglev::{self, MaglevBackend},
};
use lb_tests::{
    daemon::{DaemonProcess, NodeFiles},
    rig::{Rig, RigOptions, VIP_V4},
};
use serde_json::json;

const LB_CTL: &str = env!("CARGO_BIN_EXE_lb-ctl");
const PORT: u16 = 5353;
const ROUNDS: usize = 20;

fn main() -> ExitCode {
    let out = std::env::args()
        .skip_while(|a| a != "--out")
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/bench/control.json"));
    match run(&out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn run(out: &Path) -> Result<()> {
    let maglev = maglev_build_ms();
    println!("maglev_build_ms_1000_backends  {maglev:.3} ms (median of {ROUNDS})");
    let rig = rig()?;
    let mut daemon = start_daemon(&rig)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let change = change_to_forwarding_ms(&rig, &daemon, &runtime)?;
    println!(
        "change_to_forwarding_ms        {:.2} ms (median of {ROUNDS}; min {:.2}, max {:.2})",
        change.0, change.1, change.2
    );
    let (gap, lost) = restart_gap_ms(&rig, &mut daemon)?;
    println!("daemon_restart_gap_ms          {gap:.2} ms ({lost} datagrams lost; target 0)");
    let report = json!({
        "maglev_build_ms_1000_backends": round3(maglev),
        "change_to_forwarding_ms": round3(change.0),
        "change_to_forwarding_ms_min_max": [round3(change.1), round3(change.2)],
        "daemon_restart_gap_ms": round3(gap),
        "daemon_restart_lost_datagrams": lost,
        "targets": { "daemon_restart_gap_ms": { "target": 0, "met": gap <= 0.0 && lost == 0 } },
    });
    if let Some(dir) = out.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(out, serde_json::to_string_pretty(&report)? + "\n")?;
    println!("wrote {}", out.display());
    Ok(())
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn maglev_build_ms() -> f64 {
    let keys: Vec<[u8; 18]> = (0..1000u32)
        .map(|i| {
            let mut k = [0u8; 18];
            k[..4].copy_from_slice(&[10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            k[16..].copy_from_slice(&80u16.to_be_bytes());
            k
        })
        .collect();
    let backends: Vec<MaglevBackend<'_>> = keys
        .iter()
        .map(|key| MaglevBackend { key, weight: 1 })
        .collect();
    let times = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            let table = maglev::build_table(&backends, lb_common::MAGLEV_TABLE_SIZE)
                .expect("1000 backends fit")
                .expect("a table");
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            assert_eq!(table.len(), lb_common::MAGLEV_TABLE_SIZE as usize);
            ms
        })
        .collect();
    median(times)
}

/// The rig: four backends (the fourth joins and leaves), no nginx needed.
fn rig() -> Result<Rig> {
    let rig = Rig::build(&RigOptions {
        backends: 4,
        ..Default::default()
    })?;
    rig.add_vips()?;
    Ok(rig)
}

/// The daemon: one UDP service over the first three backends.
fn start_daemon(rig: &Rig) -> Result<DaemonProcess> {
    let files = NodeFiles::in_rig(rig);
    let mut text = files.node_table("bench", &["ext0", "int0"], None);
    text.push_str(&format!(
        "\n[[services]]\nvip = \"{VIP_V4}\"\nport = {PORT}\nprotocol = \"udp\"\n"
    ));
    for b in rig.backends.iter().take(3) {
        text.push_str(&format!(
            "\n[[services.backends]]\naddress = \"{}:{PORT}\"\n",
            b.v4
        ));
    }
    let config = files.config();
    fs::write(&config, text)?;
    DaemonProcess::start(&rig.lb().ns, Path::new(LB_CTL), files, &config)
        .context("the daemon did not start")
}

/// A receiver in a backend namespace: the arrival times of datagrams
/// (first bytes: a sequence number), until `stop`.
fn receiver(
    rig: &Rig,
    index: usize,
    stop: Arc<AtomicBool>,
    arrivals: Arc<Mutex<Vec<(Instant, u64)>>>,
) -> Result<thread::JoinHandle<Result<()>>> {
    let addr = SocketAddr::new(rig.backends[index].v4.into(), PORT);
    rig.backends[index].ns.spawn_thread(move || {
        let socket = UdpSocket::bind(addr)?;
        socket.set_read_timeout(Some(Duration::from_millis(20)))?;
        let mut buf = [0u8; 64];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, _)) = socket.recv_from(&mut buf) {
                let seq = (n >= 8).then(|| u64::from_be_bytes(buf[..8].try_into().unwrap()));
                arrivals
                    .lock()
                    .unwrap()
                    .push((Instant::now(), seq.unwrap_or(0)));
            }
        }
        Ok(())
    })
}

fn change_to_forwarding_ms(
    rig: &Rig,
    daemon: &DaemonProcess,
    runtime: &tokio::runtime::Runtime,
) -> Result<(f64, f64, f64)> {
    let client = Client::new(&daemon.files().socket());
    let service: lb_ctl::api::ServiceRef = format!("udp/{VIP_V4}:{PORT}")
        .parse()
        .map_err(anyhow::Error::msg)?;
    let new_backend = SocketAddr::new(rig.backends[3].v4.into(), PORT);
    let vip = SocketAddr::new(VIP_V4.into(), PORT);
    let mut samples = Vec::new();
    let mut next_port: u16 = 10_000;
    for round in 0..ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let rx = receiver(rig, 3, stop.clone(), arrivals.clone())?;
        // New flows: one socket (source port) per datagram.
        let first_port = next_port;
        let sender = rig.client.spawn_thread({
            let stop = stop.clone();
            move || {
                let mut port = first_port;
                let mut sent = 0u16;
                while !stop.load(Ordering::Relaxed) && sent < 50_000 {
                    let socket = UdpSocket::bind(("198.18.0.10", port))?;
                    socket.send_to(b"first packet", vip)?;
                    port = port.wrapping_add(1).max(10_000);
                    sent += 1;
                    thread::sleep(Duration::from_micros(50));
                }
                Ok(sent)
            }
        })?;
        thread::sleep(Duration::from_millis(30));
        let t0 = Instant::now();
        let applied: Applied = runtime.block_on(client.send(
            hyper::Method::POST,
            "/v1/changes",
            &Change::AddBackend {
                service,
                backend: BackendConfig {
                    address: new_backend,
                    weight: 1,
                    state: BackendState::Enabled,
                    health: None,
                },
            },
        ))?;
        let deadline = t0 + Duration::from_secs(2);
        let first = loop {
            if let Some(&(at, _)) = arrivals.lock().unwrap().first() {
                break Some(at);
            }
            if Instant::now() > deadline {
                break None;
            }
            thread::sleep(Duration::from_micros(200));
        };
        stop.store(true, Ordering::Relaxed);
        let sent = sender
            .join()
            .map_err(|_| anyhow::anyhow!("sender panicked"))??;
        next_port = next_port.wrapping_add(sent).max(10_000);
        rx.join()
            .map_err(|_| anyhow::anyhow!("receiver panicked"))??;
        let Some(first) = first else {
            bail!(
                "round {round}: no packet reached the added backend within 2 s (generation {})",
                applied.generation
            );
        };
        samples.push(first.duration_since(t0).as_secs_f64() * 1000.0);
        let _: Applied = runtime.block_on(client.send(
            hyper::Method::POST,
            "/v1/changes",
            &Change::DelBackend {
                service,
                address: new_backend,
            },
        ))?;
        thread::sleep(Duration::from_millis(50));
    }
    let min = samples.iter().copied().fold(f64::MAX, f64::min);
    let max = samples.iter().copied().fold(0.0, f64::max);
    Ok((median(samples), min, max))
}

fn restart_gap_ms(rig: &Rig, daemon: &mut DaemonProcess) -> Result<(f64, u64)> {
    let stop_receivers = Arc::new(AtomicBool::new(false));
    let stop_sender = Arc::new(AtomicBool::new(false));
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let receivers: Vec<_> = (0..3)
        .map(|i| receiver(rig, i, stop_receivers.clone(), arrivals.clone()))
        .collect::<Result<_>>()?;
    let vip = SocketAddr::new(VIP_V4.into(), PORT);
    let sender = rig.client.spawn_thread({
        let stop = stop_sender.clone();
        move || {
            let socket = UdpSocket::bind(("198.18.0.10", 9999))?;
            let mut sent_at = Vec::new();
            let start = Instant::now();
            while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(30) {
                let seq = sent_at.len() as u64;
                sent_at.push(Instant::now());
                socket.send_to(&seq.to_be_bytes(), vip)?;
                thread::sleep(Duration::from_millis(1));
            }
            Ok(sent_at)
        }
    })?;
    thread::sleep(Duration::from_millis(500));
    let killed_at = Instant::now();
    daemon.kill9();
    thread::sleep(Duration::from_millis(200));
    daemon
        .restart(&rig.lb().ns)
        .context("restarting the daemon")?;
    thread::sleep(Duration::from_millis(500));
    stop_sender.store(true, Ordering::Relaxed);
    let sent_at = sender
        .join()
        .map_err(|_| anyhow::anyhow!("sender panicked"))??;
    thread::sleep(Duration::from_millis(100));
    stop_receivers.store(true, Ordering::Relaxed);
    for r in receivers {
        r.join()
            .map_err(|_| anyhow::anyhow!("receiver panicked"))??;
    }
    let mut got = arrivals.lock().unwrap().clone();
    got.sort_by_key(|(_, seq)| *seq);
    if got.len() < 2 {
        bail!("no datagrams arrived");
    }
    // A delay is time between two arrivals that the sender did not spend
    // between the two sends (its own pauses are not the LB's). The quiet
    // window before the kill shows what the machine's scheduling alone
    // adds (receiver wake-ups); the gap is what the restart adds on top.
    let (mut quiet, mut restart) = (0.0f64, 0.0f64);
    for w in got.windows(2) {
        let received = w[1].0.saturating_duration_since(w[0].0).as_secs_f64();
        let (s0, s1) = (sent_at[w[0].1 as usize], sent_at[w[1].1 as usize]);
        let delay = ((received - s1.saturating_duration_since(s0).as_secs_f64()) * 1000.0).max(0.0);
        if s1 < killed_at {
            quiet = quiet.max(delay);
        } else {
            restart = restart.max(delay);
        }
    }
    let lost = (sent_at.len() as u64).saturating_sub(got.len() as u64);
    println!(
        "  largest delay between two datagrams: {quiet:.2} ms before the kill, {restart:.2} ms from the kill through the restart"
    );
    Ok(((restart - quiet).max(0.0), lost))
}
