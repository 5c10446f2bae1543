//! The maps pinned in bpffs, which outlive the daemon: the maps and the
//! layouts (key size, value size, entries) this build expects, opening the
//! object over the maps a previous daemon pinned (adopted with their
//! contents when compatible; a disposable map of another layout replaced
//! alone; all replaced when any other differs), and removing every pin.
use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use aya::{EbpfLoader, maps::MapInfo};
use lb_common::maps;

use super::{Dataplane, load::raise_memlock_limit, object};

/// Every map of the object with the (key size, value size, max entries) this
/// build expects: pinned maps that differ were made by an incompatible
/// version.
fn expected_maps() -> [(&'static str, usize, usize, u32); 26] {
    use core::mem::size_of;
    use lb_common::*;
    [
        (
            maps::SERVICES,
            size_of::<ServiceKey>(),
            size_of::<Service>(),
            MAX_SERVICES,
        ),
        (maps::BACKENDS, 4, size_of::<Backend>(), MAX_BACKENDS),
        (maps::MAGLEV, 4, size_of::<MaglevTable>(), MAX_SERVICES),
        (
            maps::FLOWS,
            size_of::<FlowKey>(),
            size_of::<Flow>(),
            MAX_FLOWS,
        ),
        (
            maps::REPLIES,
            size_of::<FlowKey>(),
            size_of::<Reply>(),
            MAX_FLOWS,
        ),
        (maps::NEW_FLOWS, 4, size_of::<NewFlowWays>(), NEW_FLOW_SETS),
        (
            maps::NEW_FLOW_TAGS,
            4,
            size_of::<NewFlowTags>(),
            NEW_FLOW_SETS,
        ),
        (maps::FLOW_FILTER, 4, 8, FLOW_FILTER_ENTRIES),
        (
            maps::BACKEND_VIPS,
            size_of::<ServiceKey>(),
            size_of::<BackendVips>(),
            MAX_BACKENDS,
        ),
        (maps::SERVICE_ADDRS, 4, 8, SERVICE_ADDR_WORDS),
        (maps::SETTINGS, 4, size_of::<Settings>(), 1),
        (maps::TX_PORTS, 4, 8, MAX_TX_PORTS),
        (maps::JUMP, 4, 4, JUMP_SLOTS),
        (maps::STATS, 4, 8, Counter::COUNT),
        (maps::SERVICE_STATS, 4, size_of::<Traffic>(), MAX_SERVICES),
        (maps::BACKEND_STATS, 4, size_of::<Traffic>(), MAX_BACKENDS),
        (maps::NEXTHOPS, 4, size_of::<NextHop>(), MAX_BACKENDS),
        (
            maps::CLIENT_HOPS,
            4,
            size_of::<ClientHop>(),
            CLIENT_HOP_SLOTS,
        ),
        (
            maps::FRAGMENTS,
            size_of::<FragmentKey>(),
            size_of::<Fragment>(),
            MAX_FRAGMENTS,
        ),
        (maps::ICMP_BUDGET, 4, size_of::<IcmpBudget>(), 1),
        (maps::FLOATING, size_of::<FloatingKey>(), 1, MAX_FLOATING),
        (maps::LEASE, 4, 8, 1),
        (maps::FENCE_CHECK, 4, size_of::<FenceCheck>(), 1),
        (maps::FLOW_HASH, 4, size_of::<FlowHashMemo>(), 1),
        (maps::REPLICATE, 4, 4, 1),
        // A ring buffer has no keys nor values; its size is in bytes.
        (maps::FLOW_RECORDS, 0, 0, FLOW_RECORDS_BYTES),
    ]
}

/// What [`Dataplane::open`] found in the pin directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinState {
    /// Nothing pinned: new maps.
    Fresh,
    /// Maps of a compatible previous daemon: adopted with their contents.
    Adopted,
    /// Pinned maps of an incompatible version: removed, new maps made.
    Replaced { reason: String },
}

impl Dataplane {
    /// Loads the object with its maps pinned in `dir` (a bpffs directory):
    /// maps a compatible previous daemon left there are adopted with their
    /// contents; incompatible ones are removed first.
    pub fn open(dir: &Path) -> Result<(Self, PinState)> {
        raise_memlock_limit();
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut state = PinState::Fresh;
        for (name, reason) in disposable_pins_of_another_layout(dir) {
            let path = dir.join(name);
            tracing::warn!(map = name, %reason, "a pinned cache map is of another layout: replaced alone, the others are adopted");
            fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
        if let Some(reason) = incompatible_pins(dir) {
            tracing::warn!(dir = %dir.display(), %reason, "pinned maps are of an incompatible version: replacing them");
            unpin_all(dir)?;
            state = PinState::Replaced { reason };
        } else if expected_maps()
            .iter()
            .any(|(name, ..)| dir.join(name).exists())
        {
            state = PinState::Adopted;
        }
        let paths: Vec<(&str, PathBuf)> = expected_maps()
            .iter()
            .map(|(name, ..)| (*name, dir.join(name)))
            .collect();
        let mut loader = EbpfLoader::new();
        for (name, path) in &paths {
            loader.map_pin_path(name, path.as_path());
        }
        let ebpf = loader
            .load(object())
            .context("loading the XDP object into the kernel")?;
        Ok((Self::finish_load(ebpf)?, state))
    }
}

/// Maps whose content is a cache, or which the first plan after an
/// adoption writes whole: a pinned one of another layout (an older
/// version's) is replaced alone and the others are adopted, so that an
/// upgrade that changes only these keeps the connections.
const DISPOSABLE_MAPS: [&str; 13] = [
    // Rebuilt from the connection table when adopted.
    maps::FLOW_FILTER,
    // Read back when adopted: a new, empty map has no table, so the first
    // plan writes every one, before the program is replaced (the previous
    // program keeps the map it had until then).
    maps::MAGLEV,
    // Handshakes under way: one that loses its unconfirmed way is picked
    // again by Maglev (the same backend unless the set changed); the answer
    // of a NAT backend that loses it goes to the kernel, and the client's
    // SYN sent again starts over. Either may be replaced alone: an adopted
    // tag over a new, zeroed way matches no flow (the way's family is 0).
    maps::NEW_FLOWS,
    maps::NEW_FLOW_TAGS,
    maps::CLIENT_HOPS,
    maps::NEXTHOPS,
    maps::FENCE_CHECK,
    maps::FLOW_HASH,
    maps::ICMP_BUDGET,
    maps::SERVICE_ADDRS,
    maps::BACKEND_VIPS,
    maps::FRAGMENTS,
    maps::JUMP,
];

/// The disposable maps pinned in `dir` with another layout, and how.
fn disposable_pins_of_another_layout(dir: &Path) -> Vec<(&'static str, String)> {
    expected_maps()
        .into_iter()
        .filter(|(name, ..)| DISPOSABLE_MAPS.contains(name))
        .filter_map(|(name, key, value, max)| {
            pin_layout_differs(dir, name, key, value, max).map(|reason| (name, reason))
        })
        .collect()
}

/// Why the maps pinned in `dir` cannot be adopted, if they cannot.
fn incompatible_pins(dir: &Path) -> Option<String> {
    expected_maps()
        .into_iter()
        .find_map(|(name, key, value, max)| pin_layout_differs(dir, name, key, value, max))
}

/// How the map pinned as `name` in `dir` differs from this build's, if it
/// is there and does.
fn pin_layout_differs(
    dir: &Path,
    name: &str,
    key: usize,
    value: usize,
    max: u32,
) -> Option<String> {
    let path = dir.join(name);
    if !path.exists() {
        return None;
    }
    let info = match MapInfo::from_pin(&path) {
        Ok(info) => info,
        Err(err) => return Some(format!("{}: {err}", path.display())),
    };
    let found = (
        info.key_size() as usize,
        info.value_size() as usize,
        info.max_entries(),
    );
    if found != (key, value, max) {
        return Some(format!(
            "map {name} has key/value/entries {found:?}, this version needs {:?}",
            (key, value, max)
        ));
    }
    None
}

/// Removes every pin in `dir` (maps and links): the kernel frees them once
/// nothing else holds them, and an unpinned link detaches its program.
pub fn unpin_all(dir: &Path) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}
