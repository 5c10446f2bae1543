//! The commands that talk to the daemon: each asks the local API and shows
//! the answer as a table for people or as JSON (`--json`).
use std::{
    path::Path,
    time::{Duration, Instant},
};

use hyper::Method;
use lb_ctl::{
    api::{
        Accepted, Alert, Applied, Change, ClusterOperation, ConfigCheck, ServiceView, Stats,
        Status, Synchronized,
    },
    balancer::BackendState,
    client::{Client, ClientError},
    config::{BackendConfig, Config, ConfigFile as _, ServiceConfig},
    human,
};

use super::{BackendCommand, ServiceCommand};

pub fn print_json<T: serde::Serialize>(value: &T) -> Result<(), ClientError> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| ClientError::Other(e.to_string()))?;
    println!("{text}");
    Ok(())
}

pub async fn status(client: &Client, json: bool) -> Result<(), ClientError> {
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
pub async fn cluster_operation(
    client: &Client,
    operation: ClusterOperation,
    json: bool,
) -> Result<(), ClientError> {
    let answer: Accepted = client.send(Method::POST, &operation.path(), &()).await?;
    if json {
        return print_json(&answer);
    }
    println!("{}: {}", answer.accepted, answer.message);
    Ok(())
}

pub async fn cluster_sync(client: &Client) -> Result<(), ClientError> {
    let answer: Synchronized = client.send(Method::POST, "/v1/cluster/sync", &()).await?;
    println!("synchronized: {}", answer.synchronized);
    Ok(())
}

pub async fn services(client: &Client) -> Result<Vec<ServiceView>, ClientError> {
    client.get("/v1/services").await
}

pub async fn config(client: &Client) -> Result<Config, ClientError> {
    client.get("/v1/config").await
}

pub async fn apply(client: &Client, change: &Change) -> Result<(), ClientError> {
    let applied: Applied = client.send(Method::POST, "/v1/changes", change).await?;
    println!("applied (generation {})", applied.generation);
    Ok(())
}

pub async fn service(client: &Client, cmd: ServiceCommand, json: bool) -> Result<(), ClientError> {
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

pub async fn backend(client: &Client, cmd: BackendCommand, json: bool) -> Result<(), ClientError> {
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

pub async fn stats(
    client: &Client,
    watch: bool,
    interval: u64,
    json: bool,
) -> Result<(), ClientError> {
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

pub async fn alerts(client: &Client, limit: usize, json: bool) -> Result<(), ClientError> {
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

pub async fn export(client: &Client) -> Result<(), ClientError> {
    let config = config(client).await?;
    print!("{}", config.to_toml());
    Ok(())
}

/// `lb-ctl config check FILE --daemon`: what the running daemon would do
/// with the file (`POST /v1/config/check`), after the file's own checks.
pub async fn check_with_daemon(client: &Client, file: &Path) -> Result<(), ClientError> {
    let config = Config::load(file).map_err(|e| ClientError::Refused {
        status: 400,
        message: e.to_string(),
    })?;
    let check: ConfigCheck = client
        .send(Method::POST, "/v1/config/check", &config)
        .await?;
    match check.error {
        None => {
            let cluster = if check.cluster_changes.is_empty() {
                String::new()
            } else {
                format!(
                    "; the cluster would take {} live",
                    check.cluster_changes.join(", ")
                )
            };
            println!(
                "{}: the running daemon would apply it{cluster}",
                file.display()
            );
            Ok(())
        }
        Some(problem) => Err(ClientError::Refused {
            status: 400,
            message: match problem.key {
                Some(key) => format!(
                    "the running daemon would refuse it: {key}: {}",
                    problem.message
                ),
                None => format!("the running daemon would refuse it: {}", problem.message),
            },
        }),
    }
}

pub async fn import(client: &Client, file: &Path) -> Result<(), ClientError> {
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
