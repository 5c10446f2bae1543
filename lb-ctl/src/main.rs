//! lb-ctl: the node daemon (`lb-ctl run`) and the operator's tool (every
//! other command talks to the daemon over its Unix socket).
use std::{
    io::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Result;
use clap::{CommandFactory as _, Parser, Subcommand};
use hyper::Method;
use lb_ctl::{
    api::{Alert, Applied, Change, ServiceRef, ServiceView, Stats, Status},
    balancer::{BackendState, Mode},
    client::{Client, ClientError},
    config::{BackendConfig, Config, LogFormat, ServiceConfig},
    dataplane::{self, AttachMode, Dataplane},
    human,
    run::{init_logging, wait_for_stop},
};

const EXAMPLES: &str = "\
Examples:
  lb-ctl run --config /etc/lb/lb.toml
  lb-ctl status
  lb-ctl service add tcp/198.18.0.100:80 --mode nat
  lb-ctl backend add tcp/198.18.0.100:80 198.18.1.11:80 --weight 2
  lb-ctl backend drain tcp/198.18.0.100:80 198.18.1.11:80
  lb-ctl stats --watch
  lb-ctl config export > lb-backup.toml

Exit codes:
  0  success
  1  the daemon refused the request, or the operation failed
  2  bad usage, or an invalid configuration
  3  the daemon cannot be reached";

/// lb node daemon and command-line tool.
#[derive(Parser)]
#[command(version, about, after_help = EXAMPLES)]
struct Cli {
    /// The daemon's API socket.
    #[arg(
        long,
        global = true,
        env = "LB_SOCKET",
        default_value = "/run/lb/lb.sock"
    )]
    socket: PathBuf,
    /// JSON output (read commands, failover, failback, cluster stop/start).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node daemon: load and attach the XDP program, fill its maps
    /// from the configuration, check backends, serve the API.
    Run {
        #[arg(long, default_value = "/etc/lb/lb.toml")]
        config: PathBuf,
    },
    /// The node at a glance.
    Status,
    /// Services (VIP, port, protocol).
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Backends of a service.
    #[command(subcommand)]
    Backend(BackendCommand),
    /// Packet counters, per service and backend.
    Stats {
        /// Refresh every --interval seconds, with rates.
        #[arg(long)]
        watch: bool,
        #[arg(long, default_value_t = 2)]
        interval: u64,
    },
    /// The alert log (backend down/up, configuration changes...).
    Alerts {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Configuration files: check, export (backup), import (restore).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Shell completions, e.g. `lb-ctl completions bash > /etc/bash_completion.d/lb-ctl`.
    Completions { shell: clap_complete::Shell },
    /// Low-level data-plane operations.
    #[command(subcommand)]
    Xdp(XdpCommand),
    /// The two-node cluster.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Move the group (floating IPs, service traffic) to the peer; run on
    /// the active node.
    Failover,
    /// Move the group back to the first server; run on the active node.
    Failback,
    /// Push the settings (services, backends, sorry servers) to the standby
    /// now; run on the active node.
    Sync,
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Generate the cluster from a plan (the setup parameter sheet; see
    /// docs/cluster-plan.example.toml): validates both nodes' configuration,
    /// makes the cluster id, heartbeat key and TLS material, and writes one
    /// folder per server under --out. Nothing is written if anything is
    /// invalid or a file exists (--force replaces them).
    Init {
        #[arg(long)]
        plan: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        force: bool,
    },
    /// Stop this node's cluster service (the daemon keeps running): on the
    /// active, the group first moves to the peer, and the stop is refused
    /// (nothing changes) when the peer cannot take it; the stopped node
    /// serves nothing and shows Offline on its peer.
    Stop {
        /// Stop even when the peer cannot take the group (the service is
        /// then down).
        #[arg(long)]
        force: bool,
    },
    /// Start this node's cluster service again: it rejoins as standby
    /// (also after the final action `stop`).
    Start,
}

#[derive(Subcommand)]
enum ServiceCommand {
    /// List services with their traffic.
    List,
    /// Add a service: `lb-ctl service add tcp/198.18.0.100:80 --mode nat`.
    Add {
        /// PROTOCOL/VIP:PORT, e.g. tcp/198.18.0.100:80 or udp/[2001:db8::100]:53.
        service: ServiceRef,
        #[arg(long, value_enum, default_value = "nat")]
        mode: ModeArg,
        /// Sorry server: where new flows go when no backend can take them.
        #[arg(long)]
        sorry: Option<SocketAddr>,
        #[arg(long)]
        name: Option<String>,
    },
    /// Remove a service (its flows end).
    Del { service: ServiceRef },
    /// Change a service's mode, sorry server or name.
    Set {
        service: ServiceRef,
        #[arg(long, value_enum)]
        mode: Option<ModeArg>,
        #[arg(long, conflicts_with = "no_sorry")]
        sorry: Option<SocketAddr>,
        /// Remove the sorry server.
        #[arg(long)]
        no_sorry: bool,
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ModeArg {
    Nat,
    Dsr,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Nat => Mode::Nat,
            ModeArg::Dsr => Mode::Dsr,
        }
    }
}

#[derive(Subcommand)]
enum BackendCommand {
    /// List backends (of one service, or all).
    List { service: Option<ServiceRef> },
    /// Add a backend.
    Add {
        service: ServiceRef,
        address: SocketAddr,
        #[arg(long, default_value_t = 1)]
        weight: u32,
    },
    /// Remove a backend (its flows move to the others).
    Del {
        service: ServiceRef,
        address: SocketAddr,
    },
    /// Drain: keep its flows, give it no new ones.
    Drain {
        service: ServiceRef,
        address: SocketAddr,
    },
    /// Enable: new and existing flows.
    Enable {
        service: ServiceRef,
        address: SocketAddr,
    },
    /// Disable: no flows at all (they move to the others).
    Disable {
        service: ServiceRef,
        address: SocketAddr,
    },
    /// Set the weight (0 takes no new flows).
    Weight {
        service: ServiceRef,
        address: SocketAddr,
        weight: u32,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a file without running anything (same errors as `run`).
    Check { file: PathBuf },
    /// Print the running configuration (a backup).
    Export,
    /// Replace the running configuration with a file (validated first,
    /// applied and persisted atomically; the [node] section must match).
    Import { file: PathBuf },
}

#[derive(Subcommand)]
enum XdpCommand {
    /// Load the XDP program, attach it to the interfaces and keep it attached
    /// until SIGINT or SIGTERM, printing the counters on exit (no services:
    /// everything passes).
    ///
    /// Example: lb-ctl xdp attach --iface eth0 --iface eth1
    Attach {
        /// Interface to attach to (repeat for several).
        #[arg(long = "iface", required = true)]
        ifaces: Vec<String>,
        /// Attach in generic (SKB) mode instead of native driver mode.
        #[arg(long)]
        generic: bool,
    },
    /// Detach what a stopped daemon left attached and remove its pinned
    /// maps (flows are forgotten).
    Detach {
        #[arg(long, default_value = "/sys/fs/bpf/lb")]
        pin_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run { .. }) {
        // A command whose output goes to a pipe that closes (`lb-ctl stats
        // --watch | head`) ends quietly, as cat(1) does, instead of
        // panicking in println!. The daemon keeps SIGPIPE ignored: a client
        // that goes away must never stop it.
        // SAFETY: restoring the default disposition before any thread runs.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(dispatch(cli))
}

async fn dispatch(cli: Cli) -> ExitCode {
    let client = Client::new(&cli.socket);
    let json = cli.json;
    let result = match cli.command {
        Command::Run { config } => return lb_ctl::run::run(&config).await,
        Command::Config(ConfigCommand::Check { file }) => return check(&file),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "lb-ctl", &mut std::io::stdout());
            Ok(())
        }
        Command::Xdp(XdpCommand::Attach { ifaces, generic }) => {
            init_logging(LogFormat::Text);
            return exit(xdp_attach(&ifaces, generic).await.map_err(other));
        }
        Command::Xdp(XdpCommand::Detach { pin_dir }) => {
            return exit(dataplane::unpin_all(&pin_dir).map_err(other).map(|()| {
                println!(
                    "removed the pinned program links and maps in {}",
                    pin_dir.display()
                );
            }));
        }
        Command::Cluster(ClusterCommand::Init { plan, out, force }) => {
            return cluster_init(&plan, &out, force);
        }
        Command::Cluster(ClusterCommand::Stop { force }) => {
            let operation = if force { "force-stop" } else { "stop" };
            cluster_operation(&client, operation, json).await
        }
        Command::Cluster(ClusterCommand::Start) => cluster_operation(&client, "start", json).await,
        Command::Failover => cluster_operation(&client, "failover", json).await,
        Command::Failback => cluster_operation(&client, "failback", json).await,
        Command::Sync => cluster_sync(&client).await,
        Command::Status => status(&client, json).await,
        Command::Service(cmd) => service(&client, cmd, json).await,
        Command::Backend(cmd) => backend(&client, cmd, json).await,
        Command::Stats { watch, interval } => stats(&client, watch, interval, json).await,
        Command::Alerts { limit } => alerts(&client, limit, json).await,
        Command::Config(ConfigCommand::Export) => export(&client).await,
        Command::Config(ConfigCommand::Import { file }) => import(&client, &file).await,
    };
    exit(result)
}

fn other(err: anyhow::Error) -> ClientError {
    ClientError::Other(format!("{err:#}"))
}

fn exit(result: Result<(), ClientError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            match err {
                ClientError::Unreachable { .. } => ExitCode::from(3),
                ClientError::Refused { .. } | ClientError::Other(_) => ExitCode::from(1),
            }
        }
    }
}

fn check(file: &Path) -> ExitCode {
    match Config::load(file) {
        Ok(config) => {
            let backends: usize = config.services.iter().map(|s| s.backends.len()).sum();
            println!(
                "{}: valid ({} services, {backends} backends, generation {})",
                file.display(),
                config.services.len(),
                config.generation
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
    }
}

fn cluster_init(plan: &Path, out: &Path, force: bool) -> ExitCode {
    match lb_ctl::cluster::init::init(plan, out, force) {
        Ok(files) => {
            for file in &files {
                println!("wrote {}", file.display());
            }
            println!(
                "each folder under {} goes to its server: lb.toml for `lb-ctl run --config`, \
                 the key file and tls/ where key_file and tls_dir say",
                out.display()
            );
            ExitCode::SUCCESS
        }
        Err(err @ lb_ctl::cluster::init::InitError::Plan(_)) => {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}

async fn xdp_attach(ifaces: &[String], generic: bool) -> Result<()> {
    let mode = if generic {
        tracing::warn!("generic XDP mode: every packet goes through the kernel's skb path first");
        AttachMode::Generic
    } else {
        AttachMode::Native
    };
    let mut dataplane = Dataplane::load()?;
    for iface in ifaces {
        dataplane.attach(iface, mode)?;
    }
    println!(
        "attached to {}; waiting for SIGINT or SIGTERM",
        ifaces.join(", ")
    );
    std::io::stdout().flush()?;
    wait_for_stop().await?;
    for (counter, value) in dataplane.counters()? {
        println!("{:<24} {value}", counter.name());
    }
    tracing::info!("detaching");
    Ok(())
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), ClientError> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| ClientError::Other(e.to_string()))?;
    println!("{text}");
    Ok(())
}

async fn status(client: &Client, json: bool) -> Result<(), ClientError> {
    let s: Status = client.get("/v1/status").await?;
    if json {
        return print_json(&s);
    }
    let rows = vec![
        vec!["node".into(), format!("{} ({})", s.node, s.role)],
        vec!["version".into(), s.version.clone()],
        vec!["uptime".into(), human::duration(s.uptime_seconds)],
        vec!["generation".into(), s.generation.to_string()],
        vec![
            "interfaces".into(),
            format!(
                "{} ({} XDP{})",
                s.interfaces.join(", "),
                s.xdp_mode,
                if s.adopted { ", adopted at start" } else { "" }
            ),
        ],
        vec![
            "services".into(),
            format!(
                "{} ({} backends, {} down, {} unresolved)",
                s.services, s.backends, s.backends_down, s.neighbours_unresolved
            ),
        ],
        vec!["config".into(), s.config_file.clone()],
    ];
    let mut rows = rows;
    if let Some(c) = &s.cluster {
        rows.extend(human::cluster_rows(c));
    }
    print!("{}", human::table(&rows));
    Ok(())
}

/// A cluster operation: what the node did (or why it refused, as an error).
async fn cluster_operation(
    client: &Client,
    operation: &str,
    json: bool,
) -> Result<(), ClientError> {
    let answer: serde_json::Value = client
        .send(Method::POST, &format!("/v1/cluster/{operation}"), &())
        .await?;
    if json {
        return print_json(&answer);
    }
    println!(
        "{operation}: {}",
        answer["message"].as_str().unwrap_or("accepted")
    );
    Ok(())
}

async fn cluster_sync(client: &Client) -> Result<(), ClientError> {
    let answer: serde_json::Value = client.send(Method::POST, "/v1/cluster/sync", &()).await?;
    println!(
        "synchronized: {}",
        answer["synchronized"]
            .as_str()
            .unwrap_or("the peer took the settings")
    );
    Ok(())
}

async fn services(client: &Client) -> Result<Vec<ServiceView>, ClientError> {
    client.get("/v1/services").await
}

async fn config(client: &Client) -> Result<Config, ClientError> {
    client.get("/v1/config").await
}

async fn apply(client: &Client, change: &Change) -> Result<(), ClientError> {
    let applied: Applied = client.send(Method::POST, "/v1/changes", change).await?;
    println!("applied (generation {})", applied.generation);
    Ok(())
}

async fn service(client: &Client, cmd: ServiceCommand, json: bool) -> Result<(), ClientError> {
    match cmd {
        ServiceCommand::List => {
            let list = services(client).await?;
            if json {
                return print_json(&list);
            }
            let mut rows = vec![
                [
                    "SERVICE", "NAME", "MODE", "SORRY", "BACKENDS", "PACKETS", "BYTES", "FLOWS",
                ]
                .map(String::from)
                .to_vec(),
            ];
            for s in &list {
                let up = s
                    .backends
                    .iter()
                    .filter(|b| b.health == lb_ctl::health::Health::Up)
                    .count();
                rows.push(vec![
                    s.service.to_string(),
                    s.name.clone().unwrap_or_else(|| "-".into()),
                    format!("{:?}", s.mode).to_lowercase(),
                    s.sorry.map_or("-".into(), |a| a.to_string()),
                    format!(
                        "{up}/{} up{}",
                        s.backends.len(),
                        if s.no_usable_backend {
                            " (no usable backend)"
                        } else {
                            ""
                        }
                    ),
                    human::count(s.traffic.packets),
                    human::bytes(s.traffic.bytes),
                    human::count(s.traffic.new_flows),
                ]);
            }
            print!("{}", human::table(&rows));
            Ok(())
        }
        ServiceCommand::Add {
            service,
            mode,
            sorry,
            name,
        } => {
            let change = Change::AddService {
                service: ServiceConfig {
                    name,
                    vip: service.vip.ip(),
                    port: service.vip.port(),
                    protocol: service.protocol,
                    mode: mode.into(),
                    sorry,
                    health: None,
                    backends: Vec::new(),
                },
            };
            apply(client, &change).await
        }
        ServiceCommand::Del { service } => apply(client, &Change::DelService { service }).await,
        ServiceCommand::Set {
            service,
            mode,
            sorry,
            no_sorry,
            name,
        } => {
            let current = config(client).await?;
            let mut s = current
                .services
                .into_iter()
                .find(|s| s.name() == service)
                .ok_or_else(|| ClientError::Refused {
                    status: 404,
                    message: format!("no service {service}"),
                })?;
            if let Some(mode) = mode {
                s.mode = mode.into();
            }
            if sorry.is_some() || no_sorry {
                s.sorry = sorry;
            }
            if name.is_some() {
                s.name = name;
            }
            s.backends.clear();
            apply(client, &Change::SetService { service: s }).await
        }
    }
}

async fn backend(client: &Client, cmd: BackendCommand, json: bool) -> Result<(), ClientError> {
    let set = |service, address, weight, state| Change::SetBackend {
        service,
        address,
        weight,
        state,
    };
    match cmd {
        BackendCommand::List { service } => {
            let list: Vec<ServiceView> = services(client)
                .await?
                .into_iter()
                .filter(|s| service.is_none_or(|want| s.service == want))
                .collect();
            if let (Some(want), true) = (service, list.is_empty()) {
                return Err(ClientError::Refused {
                    status: 404,
                    message: format!("no service {want}"),
                });
            }
            if json {
                return print_json(&list);
            }
            let mut rows = vec![
                [
                    "SERVICE",
                    "BACKEND",
                    "WEIGHT",
                    "STATE",
                    "HEALTH",
                    "NEIGHBOUR",
                    "PACKETS",
                    "BYTES",
                    "FLOWS",
                ]
                .map(String::from)
                .to_vec(),
            ];
            for s in &list {
                for b in &s.backends {
                    rows.push(vec![
                        s.service.to_string(),
                        b.address.to_string(),
                        b.weight.to_string(),
                        format!("{:?}", b.state).to_lowercase(),
                        format!("{:?}", b.health).to_lowercase(),
                        human::neighbour(b),
                        human::count(b.traffic.packets),
                        human::bytes(b.traffic.bytes),
                        human::count(b.traffic.new_flows),
                    ]);
                }
            }
            print!("{}", human::table(&rows));
            Ok(())
        }
        BackendCommand::Add {
            service,
            address,
            weight,
        } => {
            let backend = BackendConfig {
                address,
                weight,
                state: BackendState::Enabled,
                health: None,
            };
            apply(client, &Change::AddBackend { service, backend }).await
        }
        BackendCommand::Del { service, address } => {
            apply(client, &Change::DelBackend { service, address }).await
        }
        BackendCommand::Drain { service, address } => {
            apply(
                client,
                &set(service, address, None, Some(BackendState::Drained)),
            )
            .await
        }
        BackendCommand::Enable { service, address } => {
            apply(
                client,
                &set(service, address, None, Some(BackendState::Enabled)),
            )
            .await
        }
        BackendCommand::Disable { service, address } => {
            apply(
                client,
                &set(service, address, None, Some(BackendState::Disabled)),
            )
            .await
        }
        BackendCommand::Weight {
            service,
            address,
            weight,
        } => apply(client, &set(service, address, Some(weight), None)).await,
    }
}

async fn stats(client: &Client, watch: bool, interval: u64, json: bool) -> Result<(), ClientError> {
    let mut previous: Option<(Instant, Stats)> = None;
    loop {
        let now: Stats = client.get("/v1/stats").await?;
        let at = Instant::now();
        if json {
            print_json(&now)?;
        } else {
            if watch {
                // Clear the screen and go home, like watch(1).
                print!("\x1b[2J\x1b[H");
            }
            print!(
                "{}",
                render_stats(
                    &now,
                    previous.as_ref().map(|(t, s)| (at.duration_since(*t), s))
                )
            );
        }
        if !watch {
            return Ok(());
        }
        previous = Some((at, now));
        tokio::time::sleep(Duration::from_secs(interval.max(1))).await;
    }
}

fn render_stats(now: &Stats, before: Option<(Duration, &Stats)>) -> String {
    let mut out = String::new();
    let mut rows = vec![["COUNTER", "PACKETS", "RATE"].map(String::from).to_vec()];
    for (name, value) in &now.counters {
        let rate = before
            .and_then(|(dt, b)| {
                b.counters
                    .get(name)
                    .map(|old| (dt, value.saturating_sub(*old)))
            })
            .map_or("-".into(), |(dt, d)| {
                human::rate(d as f64 / dt.as_secs_f64(), "pps")
            });
        rows.push(vec![name.clone(), human::count(*value), rate]);
    }
    out.push_str(&human::table(&rows));
    out.push('\n');
    let mut rows = vec![
        ["SERVICE", "BACKEND", "PACKETS", "BYTES", "FLOWS", "RATE"]
            .map(String::from)
            .to_vec(),
    ];
    for s in &now.services {
        let old = before.and_then(|(dt, b)| {
            b.services
                .iter()
                .find(|o| o.service == s.service)
                .map(|o| (dt, o))
        });
        let rate = |packets: u64, old_packets: Option<(Duration, u64)>| {
            old_packets.map_or("-".into(), |(dt, p)| {
                human::rate(packets.saturating_sub(p) as f64 / dt.as_secs_f64(), "pps")
            })
        };
        rows.push(vec![
            s.service.to_string(),
            "*".into(),
            human::count(s.traffic.packets),
            human::bytes(s.traffic.bytes),
            human::count(s.traffic.new_flows),
            rate(
                s.traffic.packets,
                old.map(|(dt, o)| (dt, o.traffic.packets)),
            ),
        ]);
        for b in &s.backends {
            let old_b = old.and_then(|(dt, o)| {
                o.backends
                    .iter()
                    .find(|x| x.address == b.address)
                    .map(|x| (dt, x.traffic.packets))
            });
            rows.push(vec![
                String::new(),
                b.address.to_string(),
                human::count(b.traffic.packets),
                human::bytes(b.traffic.bytes),
                human::count(b.traffic.new_flows),
                rate(b.traffic.packets, old_b),
            ]);
        }
    }
    out.push_str(&human::table(&rows));
    out
}

async fn alerts(client: &Client, limit: usize, json: bool) -> Result<(), ClientError> {
    let list: Vec<Alert> = client.get(&format!("/v1/alerts?limit={limit}")).await?;
    if json {
        return print_json(&list);
    }
    let mut rows = vec![
        ["TIME", "LEVEL", "EVENT", "MESSAGE"]
            .map(String::from)
            .to_vec(),
    ];
    for a in &list {
        rows.push(vec![
            a.time.clone(),
            a.level.to_string(),
            a.event.to_string(),
            a.message.clone(),
        ]);
    }
    print!("{}", human::table(&rows));
    Ok(())
}

async fn export(client: &Client) -> Result<(), ClientError> {
    let config = config(client).await?;
    print!("{}", config.to_toml());
    Ok(())
}

async fn import(client: &Client, file: &Path) -> Result<(), ClientError> {
    // Checked here first, with the file's line and column.
    let config = Config::load(file).map_err(|e| ClientError::Refused {
        status: 400,
        message: e.to_string(),
    })?;
    let applied: Applied = client.send(Method::PUT, "/v1/config", &config).await?;
    println!(
        "imported {} (generation {})",
        file.display(),
        applied.generation
    );
    Ok(())
}
