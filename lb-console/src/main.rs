//! lb-console: serves the lb web console over HTTPS.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

/// How long open connections get to finish after SIGINT or SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The lb web console (HTTPS).
///
/// Without --cert and --key it generates a self-signed certificate for this
/// host, kept only in memory, and logs its SHA-256 fingerprint.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Address and port to serve the console on.
    #[arg(long, value_name = "ADDR:PORT", default_value = lb_console::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// PEM file with the server certificate chain, leaf first.
    #[arg(long, value_name = "PEM", requires = "key")]
    cert: Option<PathBuf>,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PEM", requires = "cert")]
    key: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = Args::parse();

    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow!("a rustls crypto provider is already installed"))?;

    let identity = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            let identity = lb_console::load_identity(cert, key)?;
            tracing::info!(
                cert = %cert.display(),
                fingerprint = %identity.fingerprint(),
                "using the certificate from {}", cert.display()
            );
            identity
        }
        _ => {
            let host = lb_console::hostname();
            let identity = lb_console::self_signed_identity(&host, Some(args.listen.ip()))?;
            tracing::warn!(
                fingerprint = %identity.fingerprint(),
                "no --cert/--key given: using a self-signed certificate for {host} (kept in \
                 memory only); check its SHA-256 fingerprint in the browser"
            );
            identity
        }
    };
    let tls = lb_console::tls_config(&identity)?;

    let listener = lb_console::bind(args.listen)?;
    let handle = axum_server::Handle::new();
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let stopper = handle.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!(
            "shutting down; open connections get {} s to finish",
            SHUTDOWN_GRACE.as_secs()
        );
        stopper.graceful_shutdown(Some(SHUTDOWN_GRACE));
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::warn!("second signal: closing all connections now");
        stopper.shutdown();
    });

    lb_console::serve(listener, tls, handle).await
}
