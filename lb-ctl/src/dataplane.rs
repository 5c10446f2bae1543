//! The edge to the kernel's data plane: the embedded XDP object, loading it
//! and attaching it to interfaces.
use anyhow::{Context as _, Result};
use aya::{
    Ebpf,
    maps::PerCpuArray,
    programs::{Xdp, XdpMode, xdp::XdpLinkId},
};
use lb_common::{Counter, XDP_PROGRAM, maps};

/// The compiled `lb-ebpf` object, built by this crate's build.rs.
pub fn object() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb"))
}

/// How the program is attached to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver (fast path; veth supports it).
    Native,
    /// In the generic network stack (slow; for drivers without XDP support).
    Generic,
}

impl AttachMode {
    fn xdp_mode(self) -> XdpMode {
        match self {
            AttachMode::Native => XdpMode::Driver,
            AttachMode::Generic => XdpMode::Skb,
        }
    }
}

/// The loaded object. Dropping it detaches the program from every interface
/// it was attached to through this value.
pub struct Dataplane {
    ebpf: Ebpf,
    attached: Vec<(String, XdpLinkId)>,
}

impl Dataplane {
    /// Loads the embedded object into the kernel (verifier included).
    pub fn load() -> Result<Self> {
        raise_memlock_limit();
        let mut ebpf = Ebpf::load(object()).context("loading the XDP object into the kernel")?;
        program(&mut ebpf)?
            .load()
            .context("the kernel's verifier rejected the XDP program")?;
        Ok(Self {
            ebpf,
            attached: Vec::new(),
        })
    }

    /// Attaches the program to `iface` in the calling thread's network
    /// namespace.
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<()> {
        let link = program(&mut self.ebpf)?
            .attach(iface, mode.xdp_mode())
            .with_context(|| format!("attaching XDP ({mode:?}) to interface {iface}"))?;
        tracing::info!(iface, ?mode, "XDP program attached");
        self.attached.push((iface.to_owned(), link));
        Ok(())
    }

    /// Interfaces the program is attached to through this value.
    pub fn interfaces(&self) -> impl Iterator<Item = &str> {
        self.attached.iter().map(|(iface, _)| iface.as_str())
    }

    /// Global counters summed over all CPUs, in [`Counter::ALL`] order.
    pub fn counters(&self) -> Result<Vec<(Counter, u64)>> {
        let map = self
            .ebpf
            .map(maps::STATS)
            .with_context(|| format!("map {} missing from the object", maps::STATS))?;
        let stats = PerCpuArray::<_, u64>::try_from(map)?;
        Counter::ALL
            .iter()
            .map(|&counter| {
                let per_cpu = stats.get(&(counter as u32), 0)?;
                Ok((counter, per_cpu.iter().sum()))
            })
            .collect()
    }

    /// The underlying object, for tools that drive the program directly
    /// (packet fixtures, benchmarks).
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }
}

/// The XDP program of the object.
pub fn program(ebpf: &mut Ebpf) -> Result<&mut Xdp> {
    let program = ebpf
        .program_mut(XDP_PROGRAM)
        .with_context(|| format!("program {XDP_PROGRAM} missing from the object"))?;
    Ok(program.try_into()?)
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; lift it so that
/// large maps load there too. Harmless on newer kernels.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads a valid rlimit struct.
    let ret = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
    if ret != 0 {
        tracing::debug!("could not raise RLIMIT_MEMLOCK; newer kernels do not need it");
    }
}
