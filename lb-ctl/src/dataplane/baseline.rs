//! The benchmark's baseline programs (lb-ebpf/src/baseline.rs): the object
//! loaded with one of them configured and loaded alone (not `lb_xdp`), its
//! unused tables shrunk to one entry.
use anyhow::{Context as _, Result};
use aya::{Ebpf, EbpfLoader, programs::Xdp};
use lb_common::maps;

use super::{
    load::{load_program, raise_memlock_limit},
    object,
};

/// The benchmark's yardsticks (lb-ebpf/src/baseline.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Baseline {
    /// `lb_baseline`: `lb_xdp`'s parse and NAT rewrite for one fixed
    /// service and backend, with no lookup at all.
    Plain,
    /// `lb_baseline_lookup`: the same and one lookup per packet in the
    /// connection table (`LB_FLOWS`, of its full size).
    OneLookup,
}

impl Baseline {
    /// The program's name in the object.
    pub fn program(self) -> &'static str {
        match self {
            Baseline::Plain => lb_common::BASELINE_PROGRAM,
            Baseline::OneLookup => lb_common::BASELINE_LOOKUP_PROGRAM,
        }
    }
}

/// Loads the object with the benchmark's baseline program `which`
/// configured by `config`, and loads that program only (not `lb_xdp`). The
/// tables it never uses are shrunk to one entry (the connection table
/// too, for [`Baseline::Plain`]).
pub fn load_baseline(config: &lb_common::BaselineConfig, which: Baseline) -> Result<Ebpf> {
    raise_memlock_limit();
    let mut loader = EbpfLoader::new();
    loader
        .override_global(lb_common::BASELINE_GLOBAL, config, true)
        .map_max_entries(maps::REPLIES, 1)
        .map_max_entries(maps::NEW_FLOWS, 1)
        .map_max_entries(maps::NEW_FLOW_TAGS, 1);
    if which == Baseline::Plain {
        loader.map_max_entries(maps::FLOWS, 1);
    }
    let mut ebpf = loader
        .load(object())
        .context("loading the XDP object (baseline) into the kernel")?;
    load_program(baseline_program(&mut ebpf, which)?, which.program())?;
    Ok(ebpf)
}

/// The baseline program `which` of an object from [`load_baseline`].
pub fn baseline_program(ebpf: &mut Ebpf, which: Baseline) -> Result<&mut Xdp> {
    let name = which.program();
    let program = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing from the object"))?;
    Ok(program.try_into()?)
}
