//! nginx in a backend namespace: its site, its start and its stop.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Child,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::netns::Netns;

/// The directory nginx serves, under a backend's `root`.
pub(super) fn site(root: &Path) -> PathBuf {
    root.join("www")
}

pub(super) fn write_nginx_site(root: &Path, name: &str) -> Result<PathBuf> {
    let www = site(root);
    fs::create_dir_all(root.join("tmp")).context("creating nginx's directories")?;
    fs::create_dir_all(&www).context("creating nginx's directories")?;
    fs::write(www.join("index.html"), format!("{name}\n"))?;
    let big = fs::File::create(www.join("big"))?;
    big.set_len(64 << 20)?;
    let r = root.display();
    let conf = root.join("nginx.conf");
    // `/paced/`: the files at 200 kB/s, so that a download keeps packets on
    // the wire for its whole life; `send_timeout 300s`, so that a test
    // whose load starves them of CPU (a flood) sees them slow down rather
    // than cut by nginx after its default 60 s without progress.
    fs::write(
        &conf,
        format!(
            "daemon off;\n\
             user root;\n\
             worker_processes 1;\n\
             pid {r}/nginx.pid;\n\
             error_log stderr warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n\
             \x20 access_log off;\n\
             \x20 client_body_temp_path {r}/tmp;\n\
             \x20 keepalive_requests 1000000;\n\
             \x20 sendfile on;\n\
             \x20 server {{\n\
             \x20   listen 80 default_server;\n\
             \x20   listen [::]:80 default_server;\n\
             \x20   root {r}/www;\n\
             \x20   location / {{ }}\n\
             \x20   location /paced/ {{\n\
             \x20     alias {r}/www/;\n\
             \x20     limit_rate 200k;\n\
             \x20     send_timeout 300s;\n\
             \x20   }}\n\
             \x20   location /upload/ {{\n\
             \x20     dav_methods PUT;\n\
             \x20     create_full_put_path on;\n\
             \x20     client_max_body_size 64m;\n\
             \x20   }}\n\
             \x20 }}\n\
             }}\n"
        ),
    )?;
    Ok(conf)
}

/// Waits until something listens on TCP `port` inside `ns`.
pub(super) fn wait_for_listener(ns: &Netns, port: u16, limit: Duration) -> Result<()> {
    let filter = format!("sport = :{port}");
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let out = ns.exec("ss", ["-Hltn", &filter])?;
        if !out.stdout.is_empty() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "nothing listens on port {port} in {} after {limit:?}",
        ns.name()
    )
}

pub(super) fn wait_child(child: &mut Child, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait()?;
    Ok(())
}
