//! The floating-IP edge on real interfaces: addresses added and removed
//! through rtnetlink in a namespace of our own, and the announcements
//! correcting a neighbour's stale cache entry on the other side of a veth.
use std::{
    process::Command,
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use anyhow::{Context as _, Result, ensure};
use lb_ctl::cluster::{
    Role,
    config::FloatingIp,
    floating::{AddrOp, netlink::FloatingIps},
};
use lb_tests::netns::{Netns, run};

const STALE_MAC: &str = "02:00:00:00:00:99";

struct Pair {
    lb: Netns,
    client: Netns,
}

fn pair() -> Result<Pair> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let tag = format!(
        "lbt-{}-{}-fip",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let lb = Netns::create(&format!("{tag}-lb"))?;
    let client = Netns::create(&format!("{tag}-cl"))?;
    run(Command::new("ip").args([
        "link",
        "add",
        "fipa",
        "netns",
        lb.name(),
        "type",
        "veth",
        "peer",
        "fipb",
        "netns",
        client.name(),
    ]))?;
    lb.ip(["link", "set", "fipa", "up"])?;
    client.ip(["link", "set", "fipb", "up"])?;
    lb.ip(["addr", "add", "198.18.0.1/24", "dev", "fipa"])?;
    client.ip(["addr", "add", "198.18.0.10/24", "dev", "fipb"])?;
    client.ip([
        "-6",
        "addr",
        "add",
        "2001:db8::10/64",
        "dev",
        "fipb",
        "nodad",
    ])?;
    // The client's caches point the floating IPs at a MAC that left.
    for addr in ["198.18.0.100", "2001:db8::100"] {
        client.ip([
            "neigh", "replace", addr, "lladdr", STALE_MAC, "dev", "fipb", "nud", "stale",
        ])?;
    }
    Ok(Pair { lb, client })
}

fn group() -> Vec<FloatingIp> {
    ["198.18.0.100/24", "2001:db8::100/64"]
        .into_iter()
        .map(|address| FloatingIp {
            address: address.into(),
            interface: "fipa".into(),
        })
        .collect()
}

fn addresses(ns: &Netns) -> Result<String> {
    let out = ns.ip(["-o", "addr", "show", "dev", "fipa"])?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn neighbour(ns: &Netns, addr: &str) -> Result<String> {
    let out = ns.ip(["neigh", "show", addr, "dev", "fipb"])?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn mac_of(ns: &Netns, dev: &str) -> Result<String> {
    let out = ns.ip(["-o", "link", "show", "dev", dev])?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mac = text
        .split("link/ether ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .context("no MAC")?;
    Ok(mac.to_owned())
}

/// In `ns`, the group converged to `role`: both addresses added (active,
/// then announced) or removed (standby), and a second time nothing to do.
fn converge_in(ns: &Netns, role: Role) -> Result<()> {
    ns.run_in(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let fips = FloatingIps::open(&group()).await?;
            let ops = fips.converge(role).await?;
            let expected = |op: &AddrOp| match role {
                Role::Active => matches!(op, AddrOp::Add(_)),
                Role::Standby => matches!(op, AddrOp::Del(_)),
            };
            ensure!(ops.len() == 2 && ops.iter().all(expected), "{ops:?}");
            // Again: nothing to do.
            ensure!(fips.converge(role).await?.is_empty());
            if role == Role::Active {
                ensure!(fips.announce()? == 2);
            }
            Ok(())
        })
    })
}

#[test]
fn the_active_holds_and_announces_the_group_and_the_standby_gives_it_up() -> Result<()> {
    let pair = pair()?;
    let lb_mac = mac_of(&pair.lb, "fipa")?;
    converge_in(&pair.lb, Role::Active)?;
    let held = addresses(&pair.lb)?;
    assert!(held.contains("inet 198.18.0.100/24"), "{held}");
    assert!(held.contains("inet6 2001:db8::100/64"), "{held}");
    let v6 = held
        .lines()
        .find(|l| l.contains("2001:db8::100"))
        .unwrap_or_default();
    assert!(!v6.contains("tentative"), "no DAD wait: {v6}");
    assert!(
        v6.contains("deprecated") && v6.contains("preferred_lft 0sec"),
        "never a source of the node's own packets: {v6}"
    );
    // The client's entries now name the LB's MAC (bounded wait for the
    // kernel to process the frames).
    for addr in ["198.18.0.100", "2001:db8::100"] {
        let mut entry = neighbour(&pair.client, addr)?;
        for _ in 0..50 {
            if entry.contains(&lb_mac) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
            entry = neighbour(&pair.client, addr)?;
        }
        assert!(entry.contains(&lb_mac), "{addr}: {entry} (want {lb_mac})");
    }
    // And the VIP answers from the client.
    let ping = pair
        .client
        .exec("ping", ["-c", "1", "-W", "2", "198.18.0.100"])?;
    assert!(ping.status.success());
    converge_in(&pair.lb, Role::Standby)?;
    let left = addresses(&pair.lb)?;
    assert!(
        !left.contains("198.18.0.100") && !left.contains("2001:db8::100"),
        "{left}"
    );
    assert!(
        left.contains("inet 198.18.0.1/24"),
        "its own address stays: {left}"
    );
    Ok(())
}

#[test]
fn an_unknown_interface_is_named_in_the_error() -> Result<()> {
    let pair = pair()?;
    let err = pair.lb.run_in(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(rt
            .block_on(FloatingIps::open(&[FloatingIp {
                address: "198.18.0.100/24".into(),
                interface: "nope0".into(),
            }]))
            .err()
            .map(|e| format!("{e:#}")))
    })?;
    let err = err.context("opened an interface that does not exist")?;
    assert!(
        err.contains("floating IP 198.18.0.100: interface nope0"),
        "{err}"
    );
    Ok(())
}
