//! lb-ctl: the node daemon (`lb-ctl run`) and the operator's tool (every
//! other command talks to the daemon over its Unix socket).
use std::{
    io::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Result;
use clap::{CommandFactory as _, Parser, Subcommand};
use lb_ctl::{
    api::{ClusterOperation, ServiceRef},
    balancer::Mode,
    client::{Client, ClientError},
    config::{Config, ConfigFile as _, LogFormat},
    dataplane::{self, AttachMode, Dataplane},
    run::{init_logging, wait_for_stop},
};

mod commands;

use commands::{
    alerts, backend, cluster_operation, cluster_sync, export, import, service, stats, status,
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
        default_value_os_t = lb_ctl::config::default_api_socket()
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
    /// Validate a file without running anything (same errors as `run`);
    /// with --daemon, also ask the running daemon whether an import would
    /// take it (nothing is changed).
    Check {
        file: PathBuf,
        /// Also ask the running daemon (`POST /v1/config/check`): the
        /// [node] section, the [cluster] keys that cannot change while it
        /// runs, a standby's refusal.
        #[arg(long)]
        daemon: bool,
    },
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
        Command::Config(ConfigCommand::Check {
            file,
            daemon: false,
        }) => return check(&file),
        Command::Config(ConfigCommand::Check { file, daemon: true }) => {
            commands::check_with_daemon(&client, &file).await
        }
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
            let operation = if force {
                ClusterOperation::ForceStop
            } else {
                ClusterOperation::Stop
            };
            cluster_operation(&client, operation, json).await
        }
        Command::Cluster(ClusterCommand::Start) => {
            cluster_operation(&client, ClusterOperation::Start, json).await
        }
        Command::Failover => cluster_operation(&client, ClusterOperation::Failover, json).await,
        Command::Failback => cluster_operation(&client, ClusterOperation::Failback, json).await,
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
