//! The flow and reply tables' dump and write (a standby's bulk copy), on
//! the real object loaded into the kernel; no network, no traffic. Needs
//! root.
use std::collections::BTreeMap;

use anyhow::{Result, ensure};
use lb_common::{AF_INET, AF_INET6, Flow, FlowKey, IPPROTO_TCP, IPPROTO_UDP, Reply, mode};
use lb_ctl::dataplane::Dataplane;

/// A distinct client-side key per `i`, both families.
fn key(i: u32) -> FlowKey {
    let v6 = i % 2 == 1;
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    if v6 {
        src[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        src[12..].copy_from_slice(&i.to_be_bytes());
        dst[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        dst[15] = 0x64;
    } else {
        src[..4].copy_from_slice(&[198, 18, (i >> 8) as u8, i as u8]);
        dst[..4].copy_from_slice(&[198, 18, 0, 100]);
    }
    FlowKey {
        src,
        dst,
        sport: ((1024 + i) as u16).to_be_bytes(),
        dport: 80u16.to_be_bytes(),
        proto: if i.is_multiple_of(3) {
            IPPROTO_UDP
        } else {
            IPPROTO_TCP
        },
        family: if v6 { AF_INET6 } else { AF_INET },
        pad: [0; 2],
    }
}

fn flow(i: u32) -> Flow {
    Flow {
        backend: i % 7,
        generation: 1 + i % 3,
        service: i % 5,
        mode: if i.is_multiple_of(4) {
            mode::DSR
        } else {
            mode::NAT
        },
    }
}

fn reply(i: u32) -> Reply {
    let k = key(i);
    Reply {
        vip: k.dst,
        vport: k.dport,
        pad: [0; 2],
        service: i % 5,
        backend: i % 7,
    }
}

#[test]
fn written_flows_and_replies_dump_back_exactly_and_copy_to_another_data_plane() -> Result<()> {
    const N: u32 = 5000;
    let mut active = Dataplane::load()?;
    ensure!(active.dump_flows()?.is_empty() && active.dump_replies()?.is_empty());
    let flows: Vec<(FlowKey, Flow)> = (0..N).map(|i| (key(i), flow(i))).collect();
    let replies: Vec<(FlowKey, Reply)> = (0..N).map(|i| (key(i), reply(i))).collect();
    active.write_flows(&flows)?;
    active.write_replies(&replies)?;
    // Written again (a refresh): replaced, not doubled.
    active.write_flows(&flows[..10])?;

    let dumped: BTreeMap<_, _> = active
        .dump_flows()?
        .into_iter()
        .map(|(k, f)| (key_bytes(&k), f))
        .collect();
    let wanted: BTreeMap<_, _> = flows.iter().map(|(k, f)| (key_bytes(k), *f)).collect();
    ensure!(dumped.len() == N as usize, "{} flows dumped", dumped.len());
    ensure!(
        dumped == wanted,
        "the dumped flows differ from those written"
    );
    let dumped_replies = active.dump_replies()?;
    ensure!(dumped_replies.len() == N as usize);
    for (k, r) in &dumped_replies {
        ensure!(active.reply(k)? == Some(*r));
    }

    // A bulk copy: the dump written into another data plane.
    let mut standby = Dataplane::load()?;
    standby.write_flows(&active.dump_flows()?)?;
    standby.write_replies(&dumped_replies)?;
    for (k, f) in &flows {
        ensure!(standby.flow(k)? == Some(*f), "flow {k:?} not copied");
    }
    for (k, r) in &replies {
        ensure!(standby.reply(k)? == Some(*r), "reply {k:?} not copied");
    }
    Ok(())
}

#[test]
fn the_flow_record_ring_has_one_reader() -> Result<()> {
    let mut dp = Dataplane::load()?;
    let mut records = dp.flow_records()?;
    let (got, bad) = records.drain(16);
    ensure!(
        got.is_empty() && bad.is_empty(),
        "a fresh ring holds records"
    );
    let err = dp.flow_records().err().map(|e| e.to_string());
    ensure!(
        err.as_deref()
            == Some("the flow record ring LB_FLOW_RECORDS was already taken (one reader only)"),
        "{err:?}"
    );
    Ok(())
}

/// FlowKey has no Ord: its bytes, for ordered comparisons.
fn key_bytes(k: &FlowKey) -> Vec<u8> {
    [&k.src[..], &k.dst, &k.sport, &k.dport, &[k.proto, k.family]].concat()
}

/// Removes a pin directory of this test on drop.
struct PinDir(std::path::PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = lb_ctl::dataplane::unpin_all(&self.0);
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn a_restarted_daemon_adopts_the_flows_the_switch_and_the_ring() -> Result<()> {
    use lb_ctl::dataplane::PinState;
    let dir = PinDir(std::path::PathBuf::from(format!(
        "/sys/fs/bpf/lbt-flow-tables-{}",
        std::process::id()
    )));
    let (mut first, state) = Dataplane::open(&dir.0)?;
    ensure!(state == PinState::Fresh, "{state:?}");
    ensure!(!first.replicating()?, "off by default");
    first.write_flows(&[(key(1), flow(1))])?;
    first.set_replicate(true)?;
    drop(first);
    let (mut second, state) = Dataplane::open(&dir.0)?;
    ensure!(state == PinState::Adopted, "{state:?}");
    ensure!(second.dump_flows()? == [(key(1), flow(1))]);
    ensure!(second.replicating()?, "the switch is adopted");
    ensure!(
        dir.0.join(lb_common::maps::FLOW_RECORDS).exists(),
        "the ring is pinned"
    );
    let mut records = second.flow_records()?;
    ensure!(records.drain(16).0.is_empty());
    Ok(())
}

#[test]
fn the_flow_filter_is_adopted_and_rebuilt_when_an_older_version_had_none() -> Result<()> {
    use lb_ctl::dataplane::PinState;
    let dir = PinDir(std::path::PathBuf::from(format!(
        "/sys/fs/bpf/lbt-flow-filter-{}",
        std::process::id()
    )));
    let (mut first, _) = Dataplane::open(&dir.0)?;
    let flows: Vec<_> = (0..20).map(|i| (key(i), flow(i))).collect();
    first.write_flows(&flows)?;
    ensure!(flows.iter().all(|(k, _)| first.flow_filter().may_hold(k)));
    drop(first);
    // Pinned with the tables: a restart keeps the bits.
    let (second, state) = Dataplane::open(&dir.0)?;
    ensure!(state == PinState::Adopted, "{state:?}");
    ensure!(flows.iter().all(|(k, _)| second.flow_filter().may_hold(k)));
    drop(second);
    // A version without the filter left the tables: the filter is new,
    // empty, and the rebuild the daemon makes at start fills it.
    std::fs::remove_file(dir.0.join(lb_common::maps::FLOW_FILTER))?;
    let (third, state) = Dataplane::open(&dir.0)?;
    ensure!(state == PinState::Adopted, "{state:?}");
    ensure!(!flows.iter().any(|(k, _)| third.flow_filter().may_hold(k)));
    let rebuilt = third.rebuild_flow_filter()?;
    ensure!(rebuilt.flows == 20, "{rebuilt:?}");
    ensure!(flows.iter().all(|(k, _)| third.flow_filter().may_hold(k)));
    Ok(())
}

/// Pins, in place of map `name` in `dir`, a map of another layout (as an
/// older version left it).
fn pin_other_layout(dir: &std::path::Path, name: &str, spec: &[&str]) -> Result<()> {
    let path = dir.join(name);
    std::fs::remove_file(&path)?;
    let mut args = vec!["map", "create", path.to_str().unwrap()];
    args.extend_from_slice(spec);
    args.extend_from_slice(&["name", name]);
    let out = std::process::Command::new("bpftool").args(&args).output()?;
    ensure!(
        out.status.success(),
        "bpftool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn an_upgrade_that_changes_only_caches_keeps_the_flows_and_any_other_forgets_them() -> Result<()> {
    use lb_ctl::dataplane::PinState;
    let dir = PinDir(std::path::PathBuf::from(format!(
        "/sys/fs/bpf/lbt-flow-tables-upgrade-{}",
        std::process::id()
    )));
    let (mut first, _) = Dataplane::open(&dir.0)?;
    first.write_flows(&[(key(1), flow(1))])?;
    drop(first);
    // Maps the version before had of another layout, each replaced alone
    // while the flows are kept, as `(name, bpftool's spec, the new map's
    // key and value sizes)`:
    let older: [(&str, &[&str], (usize, usize)); 3] = [
        // the next-hop cache (an LRU hash by address);
        (
            lb_common::maps::CLIENT_HOPS,
            &[
                "type",
                "lru_percpu_hash",
                "key",
                "16",
                "value",
                "32",
                "entries",
                "16384",
            ],
            (4, size_of::<lb_common::ClientHop>()),
        ),
        // the unconfirmed table (each set's tags inside its 232 bytes, no
        // table of tags): handshakes under way only; the tags are new;
        (
            lb_common::maps::NEW_FLOWS,
            &[
                "type", "array", "key", "4", "value", "232", "entries", "65536",
            ],
            (4, size_of::<lb_common::NewFlowWays>()),
        ),
        // the Maglev tables (32-bit slots): the first plan writes every
        // table into the new map.
        (
            lb_common::maps::MAGLEV,
            &[
                "type", "hash", "key", "4", "value", "262148", "entries", "1024", "flags", "1",
            ],
            (4, size_of::<lb_common::MaglevTable>()),
        ),
    ];
    for (name, spec, (key_size, value_size)) in older {
        pin_other_layout(&dir.0, name, spec)?;
        if name == lb_common::maps::NEW_FLOWS {
            std::fs::remove_file(dir.0.join(lb_common::maps::NEW_FLOW_TAGS))?;
        }
        let (second, state) = Dataplane::open(&dir.0)?;
        ensure!(state == PinState::Adopted, "{name}: {state:?}");
        ensure!(
            second.dump_flows()? == [(key(1), flow(1))],
            "{name}: the flows were lost"
        );
        let info = aya::maps::MapInfo::from_pin(dir.0.join(name))?;
        ensure!(
            (info.key_size() as usize, info.value_size() as usize) == (key_size, value_size),
            "{name} was not replaced"
        );
    }
    ensure!(dir.0.join(lb_common::maps::NEW_FLOW_TAGS).exists());
    // The connection table of another layout: everything is replaced.
    pin_other_layout(
        &dir.0,
        lb_common::maps::FLOWS,
        &[
            "type", "lru_hash", "key", "40", "value", "8", "entries", "1000000",
        ],
    )?;
    let (third, state) = Dataplane::open(&dir.0)?;
    ensure!(matches!(state, PinState::Replaced { .. }), "{state:?}");
    ensure!(third.dump_flows()?.is_empty());
    Ok(())
}
