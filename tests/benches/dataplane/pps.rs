//! Small packets (issue 13): 64-byte UDP and TCP ACK-sized frames from the
//! client namespace to the VIP, the packets per second the LB forwards
//! counted as they leave it (on the far end of its link to the backends),
//! through `lb_xdp`, `lb_baseline`, `lb_baseline_lookup`, nftables DNAT
//! and plain kernel routing, with one flow and with many; and the CPU time
//! of the LB's receive thread per packet. How and why so is in docs/benchmarks.md
//! ("How the small-packet figures are measured").
use std::{
    collections::BTreeSet,
    fs,
    net::{Ipv4Addr, SocketAddrV4},
    process::Command,
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::PerCpuArray,
    programs::{SchedClassifier, TcAttachType, Xdp, XdpMode, tc},
};
use lb_common::{
    AF_INET, BENCH_DELIVERED, BENCH_GEN_GLOBAL, BENCH_GEN_PROGRAM, BENCH_SINK_GLOBAL,
    BENCH_SINK_PROGRAM, BENCH_SINK_XDP_PROGRAM, BenchGenConfig, BenchSinkConfig, Counter, maps,
};
use lb_ctl::{
    balancer::{BackendSpec, BackendState, Mode, Protocol, ServiceSpec, addr_bytes},
    dataplane::{self, Baseline, Dataplane},
};
use lb_tests::{
    netns::Netns,
    pps::{self, FIRST_SPORT, Kind, MANY_FLOWS},
    rig::{CLIENT_V4, Rig, RigOptions, VIP_V4},
};

use super::{
    attach::{attach_baseline, lb_on_rig, mac_of, xdp},
    host::CpuTimes,
    report::Report,
    rig_ns::counters_moved,
};

/// The service port (and the backend's: NAT keeps it here, as nftables'
/// `dnat to ADDR` does).
const PORT: u16 = 9000;
/// Bound on the frames of one window: far above what a CPU makes.
const MAX_FRAMES_PER_S: u64 = 50_000_000;
/// Unmeasured run before each window (ARP, flow tables, conntrack, caches).
const WARM_UP: Duration = Duration::from_millis(300);
/// Generator samples checked byte for byte before each window.
const SAMPLES: u32 = 16;
/// The CPU of the generator and the sink's receive thread.
const GENERATOR_CPU: usize = 0;
/// The CPU of the LB's receive thread (CPU 0 too on a machine with one).
fn lb_cpu() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get().min(2)) - 1
}

/// The paths, as JSON keys; `generator` is the generator alone, into a
/// drop on the LB's first interface.
pub(super) const PATHS: [&str; 6] = [
    "generator",
    "lb",
    "baseline",
    "baseline_lookup",
    "nftables_dnat",
    "routing",
];
pub(super) const FLOWS: [&str; 2] = ["one_flow", "many_flows"];
pub(super) const KINDS: [Kind; 2] = [Kind::Udp, Kind::TcpAck];
/// The SYN flood's window (its own JSON section): TCP SYNs, each of a new
/// flow, from [`SPOOFED`]'s 65,536 addresses times 50,000 ports.
pub(super) const NEW_FLOWS: &str = "new_flows";
/// Source addresses of the SYN flood: 198.19.0.0/16, which no host of the
/// rig has (inside the test range 198.18.0.0/15).
const SPOOFED: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 0);
const SPOOFED_SOURCES: u32 = 65_536;

/// One figure: the frames per second the sink counted (for `generator`,
/// the frames the generator made) and what the generator made meanwhile.
pub(super) struct Figure {
    pub kind: Kind,
    pub flows: &'static str,
    pub path: &'static str,
    pub pps: f64,
    pub generator_pps: f64,
    /// CPU time of the LB's receive thread per packet delivered, ns (the
    /// LB's whole work on the packet: XDP, or the kernel's receive,
    /// forwarding and NAT; and its handing to the outgoing link).
    pub lb_ns_per_packet: f64,
}

/// What the rig is, for every window.
struct Setup<'a> {
    rig: &'a Rig,
    client_ifindex: u32,
    macs: ([u8; 6], [u8; 6]),
    secs: u64,
    /// The kernel threads that receive along the path (see
    /// [`receive_thread`]), by where they are.
    napi: Vec<(&'static str, u32)>,
}

pub(super) fn figures(secs: u64, report: &mut Report) -> Result<()> {
    let mut rig = Rig::build(&RigOptions {
        backends: 1,
        ..Default::default()
    })?;
    rig.add_vips()?;
    rig.resolve_backends()?;
    // The sink takes the place of the pass program on the switch's end of
    // the LB's internal link.
    rig.detach_peer_pass_programs();
    let rig = rig;
    let lb = rig.lb();
    let sink_port = lb.int_port();
    // The LB's receive thread has a CPU of its own (it preempts other
    // work there); the generator and the sink share the other.
    let napi = vec![
        ("LB", receive_thread(&lb.ns, lb.ext_iface, lb_cpu())?),
        (
            "sink",
            receive_thread(&rig.switch, &sink_port, GENERATOR_CPU)?,
        ),
    ];
    let setup = Setup {
        rig: &rig,
        client_ifindex: rig.client.run_in(|| dataplane::ifindex("eth0"))?,
        macs: (mac_of(&rig.client, "eth0")?, mac_of(&lb.ns, lb.ext_iface)?),
        secs,
        napi,
    };
    let b1 = rig.backends[0].v4;
    report.detail(format!(
        "small packets: {secs} s per window after a {} ms warm-up, batches of {} frames, many flows = {MANY_FLOWS} source ports",
        WARM_UP.as_millis(),
        pps::BATCH
    ));

    // The generator alone: its frames dropped as they reach the LB.
    {
        let sink = attach_sink(&lb.ns, lb.ext_iface, VIP_V4)?;
        windows(&setup, "generator", VIP_V4, &sink, None, report)?;
        drop(sink);
        lb.ns
            .exec("tc", ["qdisc", "del", "dev", lb.ext_iface, "clsact"])
            .context("removing the sink's qdisc from the LB's interface")?;
    }
    // Counted as they leave the LB towards b1: on the switch's end of the
    // LB's internal link, before the bridge (docs/benchmarks.md says why).
    // The kernel's packets by a tc classifier; the XDP paths' frames by an
    // XDP program, attached in front of it for their windows.
    let sink = attach_sink(&rig.switch, &sink_port, b1)?;

    // Plain routing: to b1 itself, through the LB namespace's kernel.
    windows(&setup, "routing", b1, &sink, None, report)?;

    // lb_xdp: NAT VIP:PORT -> b1:PORT, UDP and TCP.
    {
        let services: Vec<ServiceSpec> = [Protocol::Udp, Protocol::Tcp]
            .into_iter()
            .map(|protocol| ServiceSpec {
                vip: VIP_V4.into(),
                port: PORT,
                protocol,
                mode: Mode::Nat,
                backends: vec![BackendSpec {
                    addr: (b1, PORT).into(),
                    weight: 1,
                    state: BackendState::Enabled,
                }],
                sorry: None,
            })
            .collect();
        let (dp, _) = lb_on_rig(&rig, &services)?;
        let forwarded = dp.counter(Counter::Forwarded)?;
        let xdp_sink = attach_xdp_sink(&rig.switch, &sink_port, b1)?;
        windows(&setup, "lb", VIP_V4, &xdp_sink, Some(&dp), report)?;
        drop(xdp_sink);
        let forwarded = dp.counter(Counter::Forwarded)? - forwarded;
        report.detail(format!(
            "small packets, lb: lb_xdp counted {forwarded} frames forwarded over all its windows"
        ));
        // The program must have been the one forwarding.
        if forwarded == 0 {
            bail!("lb_xdp forwarded nothing");
        }
        drop(dp);
    }

    // lb_baseline and lb_baseline_lookup: VIP:PORT <-> b1:PORT.
    for (which, path) in [
        (Baseline::Plain, "baseline"),
        (Baseline::OneLookup, "baseline_lookup"),
    ] {
        let baseline = attach_baseline(&rig, PORT, which)?;
        let xdp_sink = attach_xdp_sink(&rig.switch, &sink_port, b1)?;
        windows(&setup, path, VIP_V4, &xdp_sink, None, report)?;
        drop(xdp_sink);
        drop(baseline);
    }

    // nftables DNAT in the LB namespace, no XDP.
    lb.ns
        .nft(&format!(
            "table ip lbpps {{\n\
             \x20 chain prerouting {{\n\
             \x20   type nat hook prerouting priority dstnat; policy accept;\n\
             \x20   ip daddr {VIP_V4} meta l4proto {{ tcp, udp }} th dport {PORT} dnat to {b1}\n\
             \x20 }}\n\
             }}\n"
        ))
        .context("loading the nftables DNAT rule in the LB namespace")?;
    let result = windows(&setup, "nftables_dnat", VIP_V4, &sink, None, report);
    let conntrack = lb
        .ns
        .exec("cat", ["/proc/sys/net/netfilter/nf_conntrack_count"])
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned());
    report.detail(format!(
        "small packets, nftables_dnat: {} conntrack entries in the LB namespace afterwards",
        conntrack.unwrap_or_else(|err| format!("? ({err:#})"))
    ));
    lb.ns.exec("nft", ["delete", "table", "ip", "lbpps"])?;
    result
}

/// The four windows of one path (UDP and TCP ACK, one flow and many flows);
/// a window that fails is reported and the others still run. With `lb`,
/// each window's line says which of its counters moved.
fn windows(
    setup: &Setup,
    path: &'static str,
    dst: Ipv4Addr,
    sink: &Ebpf,
    lb: Option<&Dataplane>,
    report: &mut Report,
) -> Result<()> {
    let runs = KINDS
        .iter()
        .flat_map(|&kind| FLOWS.iter().map(move |&flows| (kind, flows)))
        .chain([(Kind::TcpSyn, NEW_FLOWS)]);
    for (kind, flows) in runs {
        {
            // Diagnostics only: a counter that cannot be read is said so,
            // and the window still counts.
            let counters = lb.map(Dataplane::counters);
            match window(setup, path, dst, kind, flows, sink) {
                Ok((figure, mut line)) => {
                    if let (Some(lb), Some(before)) = (lb, counters) {
                        let moved =
                            before.and_then(|before| Ok(counters_moved(&before, &lb.counters()?)));
                        line += &match moved {
                            Ok(moved) => {
                                format!("; lb_xdp's counters (warm-up included): {moved}")
                            }
                            Err(err) => format!("; lb_xdp's counters not read: {err:#}"),
                        };
                    }
                    report.detail(line);
                    report.small_pps.push(figure);
                }
                Err(err) => report.failure(format!(
                    "small packets, {path} {} {flows}: {err:#}",
                    kind.name()
                )),
            }
        }
    }
    Ok(())
}

/// One window: the generator's frames checked, a warm-up, then `secs` of
/// frames to `dst`:PORT; the sink's count over it.
fn window(
    setup: &Setup,
    path: &'static str,
    dst: Ipv4Addr,
    kind: Kind,
    flows_key: &'static str,
    sink: &Ebpf,
) -> Result<(Figure, String)> {
    let (flows, sources, src) = match flows_key {
        "many_flows" => (MANY_FLOWS, 1, CLIENT_V4),
        NEW_FLOWS => (MANY_FLOWS, SPOOFED_SOURCES, SPOOFED),
        _ => (1, 1, CLIENT_V4),
    };
    let template = pps::frame(
        kind,
        setup.macs,
        SocketAddrV4::new(src, FIRST_SPORT),
        SocketAddrV4::new(dst, PORT),
    );
    let duration = Duration::from_secs(setup.secs);
    let max_frames = setup.secs * MAX_FRAMES_PER_S;
    let client = &setup.rig.client;
    let ifindex = setup.client_ifindex;
    let napi = &setup.napi;
    let (generated, delivered, queue_full, cpu, napi_ns) = client.run_in(|| {
        pin_to(GENERATOR_CPU)?;
        let generator = load_generator(&template, flows, sources)?;
        let program = xdp(&generator, BENCH_GEN_PROGRAM)?;
        let (ports, addrs) =
            pps::check_frames(program, ifindex, &template, (flows, sources), SAMPLES)?;
        // Several sources: the address changes first (see BenchGenConfig).
        let expected = if sources > 1 {
            (1, SAMPLES as usize)
        } else {
            (if flows > 1 { SAMPLES as usize } else { 1 }, 1)
        };
        if (ports, addrs) != expected {
            bail!(
                "{ports} source ports and {addrs} addresses in {SAMPLES} generator samples for {flows} flows from {sources} addresses"
            );
        }
        pps::generate(program, ifindex, &template, WARM_UP, u64::MAX)?;
        let before = delivered(sink)?;
        let queue_full = xmit_errors(client)?;
        let cpu = CpuTimes::read()?;
        let napi_ns = threads_ns(napi)?;
        let generated = pps::generate(program, ifindex, &template, duration, max_frames)?;
        let napi_ns: Vec<u64> = threads_ns(napi)?
            .iter()
            .zip(&napi_ns)
            .map(|(after, before)| after - before)
            .collect();
        let cpu = CpuTimes::read()?.since(&cpu);
        // Frames still on their way.
        thread::sleep(Duration::from_millis(100));
        Ok((
            generated,
            delivered(sink)? - before,
            xmit_errors(client)? - queue_full,
            cpu,
            napi_ns,
        ))
    })?;
    if delivered == 0 {
        bail!(
            "the sink counted nothing ({} frames made)",
            generated.frames
        );
    }
    let seconds = generated.elapsed.as_secs_f64();
    let generator_pps = generated.per_second();
    let pps = delivered as f64 / seconds;
    let napi_busy: Vec<String> = setup
        .napi
        .iter()
        .zip(&napi_ns)
        .map(|((place, _), &ns)| format!("{place} {:.0} %", ns as f64 / 1e9 / seconds * 100.0))
        .collect();
    let lb_ns_per_packet = napi_ns[0] as f64 / delivered as f64;
    let line = format!(
        "small packets, {path} {} {flows_key}: {pps:.0} delivered/s, generator {generator_pps:.0}/s ({} frames in {seconds:.2} s), {queue_full} had no room in the LB's queue, receive threads busy: {}; LB thread {lb_ns_per_packet:.0} ns CPU per packet delivered; machine: {cpu}",
        kind.name(),
        generated.frames,
        napi_busy.join(", ")
    );
    let pps = if path == "generator" {
        generator_pps
    } else {
        pps
    };
    Ok((
        Figure {
            kind,
            flows: flows_key,
            path,
            pps,
            generator_pps,
            lb_ns_per_packet,
        },
        line,
    ))
}

/// Makes `iface` in `ns` poll in a kernel thread of its own (threaded
/// NAPI) and gives that thread real-time priority: the whole path behind it
/// (XDP or the stack, the switch, the backend's sink) runs there, not on
/// the generator's CPU, and other work on the machine does not preempt it,
/// as a NIC's interrupt and softirq preempt user work. Returns its pid.
fn receive_thread(ns: &Netns, iface: &str, cpu: usize) -> Result<u32> {
    let before = napi_threads(iface)?;
    ns.exec(
        "sh",
        ["-c", &format!("echo 1 > /sys/class/net/{iface}/threaded")],
    )
    .with_context(|| format!("threaded NAPI on {}:{iface}", ns.name()))?;
    let new: Vec<u32> = napi_threads(iface)?.difference(&before).copied().collect();
    let [pid] = new[..] else {
        bail!(
            "{} new napi/{iface}-* kernel threads, expected one",
            new.len()
        );
    };
    lb_tests::netns::run(Command::new("chrt").args(["-f", "-p", "50", &pid.to_string()]))
        .with_context(|| format!("real-time priority for napi/{iface} (pid {pid})"))?;
    lb_tests::netns::run(Command::new("taskset").args([
        "-p",
        "-c",
        &cpu.to_string(),
        &pid.to_string(),
    ]))
    .with_context(|| format!("binding napi/{iface} (pid {pid}) to CPU {cpu}"))?;
    Ok(pid)
}

/// The pids of the threads named `napi/IFACE-N` (threaded NAPI).
fn napi_threads(iface: &str) -> Result<BTreeSet<u32>> {
    let prefix = format!("napi/{iface}-");
    let mut pids = BTreeSet::new();
    for entry in fs::read_dir("/proc")? {
        let Some(pid) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.starts_with(&prefix)) {
            pids.insert(pid);
        }
    }
    Ok(pids)
}

fn threads_ns(threads: &[(&str, u32)]) -> Result<Vec<u64>> {
    threads.iter().map(|&(_, pid)| thread_ns(pid)).collect()
}

/// CPU time of thread `pid` so far, in ns (`/proc/PID/schedstat`).
fn thread_ns(pid: u32) -> Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .with_context(|| format!("a receive thread (pid {pid}) is gone"))?;
    stat.split_whitespace()
        .next()
        .context("/proc/PID/schedstat")?
        .parse()
        .context("/proc/PID/schedstat")
}

/// Binds the calling thread to `cpu`.
fn pin_to(cpu: usize) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET and
    // sched_setaffinity(0, ...) act on it and on the calling thread only.
    let status = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set)
    };
    if status != 0 {
        bail!(
            "binding the generator to CPU {cpu}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// The generator, loaded with `frame`, `flows` and `sources` (the object's flow tables
/// shrunk to one entry: it never uses them).
fn load_generator(
    frame: &[u8; lb_common::BENCH_FRAME_BYTES],
    flows: u32,
    sources: u32,
) -> Result<Ebpf> {
    let config = BenchGenConfig {
        frame: *frame,
        flows,
        sources,
    };
    let mut ebpf = EbpfLoader::new()
        .override_global(BENCH_GEN_GLOBAL, &config, true)
        .map_max_entries(maps::FLOWS, 1)
        .map_max_entries(maps::REPLIES, 1)
        .load(dataplane::object())
        .context("loading the XDP object (generator)")?;
    program_mut(&mut ebpf, BENCH_GEN_PROGRAM)?
        .load()
        .context("the verifier rejected lb_bench_gen")?;
    Ok(ebpf)
}

/// The sink attached to `iface` in `ns` (tc ingress, on a clsact qdisc),
/// counting and dropping TCP and UDP to `addr`:PORT.
fn attach_sink(ns: &Netns, iface: &str, addr: Ipv4Addr) -> Result<Ebpf> {
    ns.run_in(|| {
        let mut ebpf = load_sink(addr)?;
        // An error here is "exists" from an earlier sink on the same link.
        let _ = tc::qdisc_add_clsact(iface);
        let program: &mut SchedClassifier = ebpf
            .program_mut(BENCH_SINK_PROGRAM)
            .with_context(|| format!("program {BENCH_SINK_PROGRAM} missing from the object"))?
            .try_into()?;
        program
            .load()
            .context("the verifier rejected lb_bench_sink")?;
        program
            .attach(iface, TcAttachType::Ingress)
            .with_context(|| format!("attaching lb_bench_sink to {iface} (tc ingress)"))?;
        Ok(ebpf)
    })
    .with_context(|| format!("the sink on {}:{iface}", ns.name()))
}

/// The sink as an XDP program on `iface` in `ns` (native; detached when
/// dropped), for the paths that redirect XDP frames into the link: a veth
/// runs XDP on those as they come, where the classifier costs a socket
/// buffer each, and the sink's work is taken from the generator's CPU.
/// The kernel's packets would cost it a copy each (a veth copies a socket
/// buffer into a page for XDP): their windows keep the classifier.
fn attach_xdp_sink(ns: &Netns, iface: &str, addr: Ipv4Addr) -> Result<Ebpf> {
    ns.run_in(|| {
        let mut ebpf = load_sink(addr)?;
        let program = program_mut(&mut ebpf, BENCH_SINK_XDP_PROGRAM)?;
        program
            .load()
            .context("the verifier rejected lb_bench_sink_xdp")?;
        program
            .attach(iface, XdpMode::Driver)
            .with_context(|| format!("attaching lb_bench_sink_xdp to {iface} (native XDP)"))?;
        Ok(ebpf)
    })
    .with_context(|| format!("the XDP sink on {}:{iface}", ns.name()))
}

/// The object with the sink's configuration: TCP and UDP to `addr`:PORT
/// (the object's flow tables shrunk to one entry: it never uses them).
fn load_sink(addr: Ipv4Addr) -> Result<Ebpf> {
    let config = BenchSinkConfig {
        addr: addr_bytes(addr.into()),
        port: PORT.to_be_bytes(),
        family: AF_INET,
        ..BenchSinkConfig::UNSET
    };
    EbpfLoader::new()
        .override_global(BENCH_SINK_GLOBAL, &config, true)
        .map_max_entries(maps::FLOWS, 1)
        .map_max_entries(maps::REPLIES, 1)
        .load(dataplane::object())
        .context("loading the XDP object (sink)")
}

fn program_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp> {
    let program = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing from the object"))?;
    Ok(program.try_into()?)
}

/// Frames the sink counted so far, all CPUs.
fn delivered(sink: &Ebpf) -> Result<u64> {
    let map = sink
        .map(maps::BENCH)
        .with_context(|| format!("map {} missing from the object", maps::BENCH))?;
    let counts: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
    Ok(counts.get(&BENCH_DELIVERED, 0)?.iter().sum())
}

/// Frames the client's interface could not hand to the LB's (its receive
/// queue full): `tx_queue_N_xdp_xmit_errors` of `ethtool -S eth0`.
fn xmit_errors(client: &Netns) -> Result<u64> {
    let out = client.exec("ethtool", ["-S", "eth0"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut sum = 0;
    let mut seen = false;
    for line in text.lines() {
        let Some((name, value)) = line.trim().split_once(':') else {
            continue;
        };
        if name.starts_with("tx_queue_") && name.ends_with("_xdp_xmit_errors") {
            sum += value.trim().parse::<u64>().context("ethtool -S")?;
            seen = true;
        }
    }
    if !seen {
        bail!("no tx_queue_N_xdp_xmit_errors in `ethtool -S eth0` of the client");
    }
    Ok(sum)
}
