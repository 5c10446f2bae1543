use anyhow::Result;
use clap::{Parser, Subcommand};
use lb_ctl::dataplane::{AttachMode, Dataplane};

/// lb node daemon and command-line tool.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Low-level data-plane operations.
    #[command(subcommand)]
    Xdp(XdpCommand),
}

#[derive(Subcommand)]
enum XdpCommand {
    /// Load the XDP program, attach it to the interfaces and keep it attached
    /// until SIGINT or SIGTERM, printing the counters on exit.
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
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Xdp(XdpCommand::Attach { ifaces, generic }) => attach(&ifaces, generic).await,
    }
}

async fn attach(ifaces: &[String], generic: bool) -> Result<()> {
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
    wait_for_stop().await?;
    for (counter, value) in dataplane.counters()? {
        println!("{:<20} {value}", counter.name());
    }
    tracing::info!("detaching");
    Ok(())
}

async fn wait_for_stop() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
