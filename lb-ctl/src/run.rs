//! `lb-ctl run`: the node daemon from its configuration file to its stop.
//! Validates the file first (nothing is touched before), checks where the
//! pins live, makes the backends' neighbour entries, starts the daemon,
//! its API, metrics and, when clustered, the pair; on SIGINT or SIGTERM a
//! clustered node steps down before the daemon stops.
use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::Result;

use crate::{
    bpffs,
    config::{Config, ConfigError, ConfigFile as _, LogFormat},
    daemon::{self, Daemon, Event, Handle, event_loop},
    neighbours::{self, netlink::Netlink},
    role, server,
};

/// Logs on stderr, `RUST_LOG` or `info`, as text or JSON.
pub fn init_logging(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Runs the daemon with the configuration at `path` until it is stopped;
/// the exit code `lb-ctl run` returns (2: invalid configuration).
pub async fn run(path: &Path) -> ExitCode {
    // Nothing is touched before the configuration is known to be valid.
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.node.log_format);
    let private = match check_bpffs(path, &config) {
        Ok(private) => private,
        Err(code) => return code,
    };
    match serve(path, config, private).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %format!("{err:#}"), "lb-ctl run failed");
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

/// Makes sure `node.bpffs_dir` is on a bpffs, and refuses one whose pins
/// would vanish with this process (`ip netns exec` gives it a /sys of its
/// own) unless `node.allow_private_bpffs` says so. Returns the private
/// bpffs's mount point when it is allowed.
fn check_bpffs(path: &Path, config: &Config) -> Result<Option<PathBuf>, ExitCode> {
    let dir = &config.node.bpffs_dir;
    if let Err(err) = daemon::ensure_bpffs(dir) {
        eprintln!("error: {err:#}");
        return Err(ExitCode::from(1));
    }
    let verdict = match bpffs::check(dir) {
        Ok(verdict) => verdict,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the mount tables: whether the pins outlive lb-ctl is not checked");
            return Ok(None);
        }
    };
    match verdict {
        bpffs::Verdict::Shared => Ok(None),
        bpffs::Verdict::NotBpffs { fs_type } => {
            eprintln!(
                "error: {} is on a {fs_type} filesystem, not on a bpffs",
                dir.display()
            );
            Err(ExitCode::from(1))
        }
        bpffs::Verdict::Private { mount_point } if config.node.allow_private_bpffs => {
            tracing::warn!(
                dir = %dir.display(),
                mount = %mount_point.display(),
                "the bpffs is private to this process's mount namespace: the XDP program is detached when lb-ctl exits (node.allow_private_bpffs = true)"
            );
            Ok(Some(mount_point))
        }
        bpffs::Verdict::Private { mount_point } => {
            // At the bpffs_dir setting, or at [node] when it is the default.
            let err = ConfigError::node_field(
                path,
                "bpffs_dir",
                format!(
                    "node.bpffs_dir {} is on a bpffs (mounted on {}) that only this process's mount namespace has, not PID 1's (`ip netns exec` gives a process a /sys of its own). What lb-ctl pins there vanishes when it exits, and the XDP program is detached with it. Run lb-ctl in the host's mount namespace, with the host's /sys/fs/bpf (`nsenter --net=/run/netns/NAME lb-ctl run ...`, not `ip netns exec`), or set node.allow_private_bpffs = true to run anyway",
                    dir.display(),
                    mount_point.display()
                ),
            );
            eprintln!("error: {err}");
            Err(ExitCode::from(2))
        }
    }
}

async fn serve(path: &Path, config: Config, private_bpffs: Option<PathBuf>) -> Result<()> {
    let listener = daemon::bind_api(&config.node.api_socket)?;
    let (health_tx, health_rx) = tokio::sync::mpsc::channel(256);
    // A standalone node is active; a clustered node starts standby: it
    // serves once membership says so.
    let role = match &config.cluster {
        Some(_) => role::Role::Standby,
        None => role::decide(role::Membership::Standalone),
    };
    // The backends' neighbour entries first: the program, once attached,
    // finds their link-layer addresses from the first packet on.
    let netlink = Netlink::connect()?;
    let reading = neighbours::task::first_neighbours(&netlink, &config).await;
    let mut daemon = Daemon::start(path.to_owned(), config.clone(), role, health_tx)?;
    if let Some(mount_point) = private_bpffs {
        daemon.set_private_bpffs(&mount_point);
    }
    daemon.on_neighbours(&reading);
    // From here the daemon's state belongs to its event loop; every other
    // task reaches it through `handle`.
    let (handle, events) = Handle::new();
    let (stop_cluster, stop_rx) = tokio::sync::watch::channel(false);
    let (pusher, cluster_task) = match &config.cluster {
        Some(cluster) => {
            let (pusher, task) = crate::cluster::serve::start(
                cluster.clone(),
                config.node.name.clone(),
                &mut daemon,
                handle.clone(),
                stop_rx,
            )?;
            (Some(pusher), Some(task))
        }
        None => (None, None),
    };
    let filter = daemon.flow_filter_keeper()?;
    let wake = daemon.neighbour_wake();
    let event_loop = event_loop::spawn(daemon, pusher, &handle, events);
    tokio::spawn(event_loop::forward(
        health_rx,
        handle.clone(),
        Event::Health,
    ));
    tokio::spawn(daemon::flow_filter::keep(filter));
    tokio::spawn(neighbours::task::keep_neighbours(
        handle.clone(),
        wake,
        netlink,
    ));
    let api = tokio::spawn({
        let router = server::api_router(handle.clone());
        async move { axum::serve(listener, router).await }
    });
    if let Some(addr) = config.node.metrics {
        let handle = handle.clone();
        tokio::spawn(async move {
            if let Err(err) = server::serve_metrics(addr, handle).await {
                tracing::error!(error = %format!("{err:#}"), "metrics server stopped");
            }
        });
    }
    tracing::info!(
        socket = %config.node.api_socket.display(),
        node = %config.node.name,
        "lb-ctl daemon running"
    );
    wait_for_stop().await?;
    api.abort();
    if let Some(task) = cluster_task {
        // A clustered node steps down and tells its peer before it goes
        // (its role change still goes through the daemon's loop).
        let _ = stop_cluster.send(true);
        match tokio::time::timeout(Duration::from_secs(5), task).await {
            Ok(Ok(Err(err))) => tracing::error!(error = %format!("{err:#}"), "cluster"),
            Err(_) => tracing::error!("the cluster did not step down within 5 s"),
            _ => {}
        }
    }
    if let Err(err) = handle.ask(Event::Stop).await {
        tracing::error!(error = %err, "the daemon did not record its stop");
    }
    // The loop ends at the stop (it drops the daemon's handles then).
    let _ = tokio::time::timeout(Duration::from_secs(1), event_loop).await;
    let _ = std::fs::remove_file(&config.node.api_socket);
    Ok(())
}

/// SIGINT or SIGTERM.
pub async fn wait_for_stop() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
