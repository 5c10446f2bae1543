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
    /// The administrator's credentials (`lb-console set-password` writes
    /// them).
    #[arg(long, value_name = "FILE", default_value = "/etc/lb/console.toml")]
    credentials: PathBuf,
    /// The audit trail: one JSON line per login, logout and change.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/var/log/lb-console-audit.jsonl"
    )]
    audit: PathBuf,
    /// The node's daemon's API socket (`lb-ctl run`'s `node.api_socket`),
    /// asked for everything the console shows of the load balancer.
    #[arg(
        long,
        value_name = "PATH",
        env = "LB_SOCKET",
        default_value_os_t = lb_common::api::default_api_socket()
    )]
    socket: PathBuf,
    /// The other node's console (e.g. https://198.18.0.2:50453/), linked
    /// from this node's read-only pages when it is the standby.
    #[arg(long, value_name = "URL")]
    peer_console: Option<String>,
    /// How often the Statistics page's traffic is sampled from the daemon
    /// (e.g. 10s, 500ms); its charts keep the last 60 samples.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = interval)]
    stats_interval: Duration,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Sets the administrator's user name and password: reads the password
    /// from standard input (twice, without echo, on a terminal) and writes
    /// only its argon2id hash to the credentials file (mode 0600).
    SetPassword {
        /// The credentials file.
        #[arg(long, value_name = "FILE")]
        credentials: PathBuf,
        /// The administrator's user name.
        #[arg(long, default_value = "admin")]
        user: String,
    },
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(1)
        }
    }
}

#[tokio::main]
async fn run() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = Args::parse();
    if let Some(Command::SetPassword { credentials, user }) = &args.command {
        return set_password(credentials, user);
    }

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
    let credentials = lb_console::auth::password::Credentials::load(&args.credentials)?;
    // The trail must be writable before anyone can log in.
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.audit)
        .with_context(|| format!("cannot open the audit trail {}", args.audit.display()))?;
    let access = std::sync::Arc::new(lb_console::login::Access::new(
        credentials,
        lb_console::auth::audit::AuditLog::new(&args.audit),
    ));

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

    let daemon = lb_common::api::Client::new(&args.socket);
    lb_console::serve_sampling(
        listener,
        tls,
        handle,
        access,
        daemon,
        args.peer_console.clone(),
        args.stats_interval,
    )
    .await
}

/// A sampling interval: a duration of 100 ms or more.
fn interval(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e}"))?;
    if d < Duration::from_millis(100) {
        return Err(format!("{text:?} is shorter than 100ms"));
    }
    Ok(d)
}

/// `lb-console set-password`: nothing is written unless the password is
/// accepted.
fn set_password(path: &std::path::Path, user: &str) -> Result<()> {
    let password = if std::io::stdin().is_terminal() {
        let first = read_hidden("New password: ")?;
        let again = read_hidden("Again: ")?;
        if first != again {
            anyhow::bail!("the two passwords differ: nothing was changed");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    let credentials = lb_console::auth::password::Credentials::new(user, &password)?;
    credentials.save(path)?;
    eprintln!(
        "the password of {user} is set: its argon2id hash is in {}",
        path.display()
    );
    Ok(())
}

/// Reads a line from the terminal with echo off.
fn read_hidden(prompt: &str) -> Result<String> {
    use std::io::Write as _;
    eprint!("{prompt}");
    std::io::stderr().flush().ok();
    let fd = libc::STDIN_FILENO;
    // SAFETY: tcgetattr/tcsetattr on stdin with a termios we own.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    let have_tty = unsafe { libc::tcgetattr(fd, &mut saved) } == 0;
    if have_tty {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    let mut line = String::new();
    let read = std::io::stdin().read_line(&mut line);
    if have_tty {
        // SAFETY: as above, restoring what tcgetattr gave.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
        eprintln!();
    }
    read.context("reading the password")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
