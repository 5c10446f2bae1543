//! Attaching the program to interfaces: through a link this value holds
//! (detached when it is dropped), or through a link pinned in bpffs that
//! keeps the program attached without the daemon and that the next daemon
//! adopts, replacing the program in one step; the interfaces the program
//! may redirect to (`LB_TX_PORTS`); and the pinned links' removal.
use std::{ffi::CString, fs, path::Path};

use anyhow::{Context as _, Result, bail};
use aya::{
    maps::DevMapHash,
    programs::{
        XdpMode,
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
    },
};
use lb_common::maps;

use super::{Dataplane, map_mut, program};

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

impl Dataplane {
    /// Attaches the program to `iface` (in the calling thread's network
    /// namespace) through a link pinned in `dir`, so that it stays attached
    /// when the daemon stops. If a previous daemon's link is pinned there,
    /// its program is replaced by ours in one step (no packet goes
    /// unprocessed). Returns true when a link was adopted.
    pub fn attach_pinned(&mut self, iface: &str, mode: AttachMode, dir: &Path) -> Result<bool> {
        let ifindex = ifindex(iface)?;
        self.add_tx_port(ifindex)?;
        let path = dir.join(format!("link_{iface}"));
        if path.exists() {
            match self.adopt_link(&path) {
                Ok(()) => {
                    tracing::info!(
                        iface,
                        ifindex,
                        "adopted the pinned XDP link: program replaced in place"
                    );
                    self.attached.push((iface.to_owned(), None));
                    return Ok(true);
                }
                Err(err) => {
                    tracing::warn!(iface, error = %format!("{err:#}"), "the pinned XDP link cannot be adopted: attaching anew");
                    fs::remove_file(&path)
                        .with_context(|| format!("removing {}", path.display()))?;
                }
            }
        }
        let program = program(&mut self.ebpf)?;
        let id = program
            .attach(iface, mode.xdp_mode())
            .with_context(|| format!("attaching XDP ({mode:?}) to interface {iface}"))?;
        let link: FdLink = program
            .take_link(id)?
            .try_into()
            .context("the kernel gave no bpf_link for XDP (kernel older than 5.9?)")?;
        link.pin(&path)
            .with_context(|| format!("pinning the XDP link at {}", path.display()))?;
        tracing::info!(iface, ifindex, ?mode, pin = %path.display(), "XDP program attached");
        self.attached.push((iface.to_owned(), None));
        Ok(false)
    }

    fn adopt_link(&mut self, path: &Path) -> Result<()> {
        let pinned = PinnedLink::from_pin(path)
            .with_context(|| format!("opening the pinned link {}", path.display()))?;
        let link = XdpLink::try_from(FdLink::from(pinned)).context("the pinned link is not XDP")?;
        let program = program(&mut self.ebpf)?;
        let id = program
            .attach_to_link(link)
            .context("replacing the program of the pinned link")?;
        // The link stays pinned; our handle is only closed, never detached.
        let link: FdLink = program.take_link(id)?.try_into()?;
        drop(link);
        Ok(())
    }

    /// Attaches the program to `iface` in the calling thread's network
    /// namespace, and lets the program redirect packets to it.
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<()> {
        let ifindex = ifindex(iface)?;
        self.add_tx_port(ifindex)?;
        let link = program(&mut self.ebpf)?
            .attach(iface, mode.xdp_mode())
            .with_context(|| format!("attaching XDP ({mode:?}) to interface {iface}"))?;
        tracing::info!(iface, ifindex, ?mode, "XDP program attached");
        self.attached.push((iface.to_owned(), Some(link)));
        Ok(())
    }

    /// Lets the program redirect packets to interface `ifindex`.
    pub fn add_tx_port(&mut self, ifindex: u32) -> Result<()> {
        let mut ports: DevMapHash<_> = map_mut(&mut self.ebpf, maps::TX_PORTS)?;
        ports
            .insert(ifindex, ifindex, None, 0)
            .with_context(|| format!("adding interface {ifindex} to {}", maps::TX_PORTS))?;
        Ok(())
    }

    /// Interfaces the program is attached to through this value.
    pub fn interfaces(&self) -> impl Iterator<Item = &str> {
        self.attached.iter().map(|(iface, _)| iface.as_str())
    }
}

/// True when the XDP link of `iface` is pinned in `dir` (a bpf_link that
/// keeps the program attached without any process).
pub fn link_pinned(dir: &Path, iface: &str) -> bool {
    PinnedLink::from_pin(dir.join(format!("link_{iface}"))).is_ok()
}

/// Removes the pinned links of `dir` (detaching the program from those
/// interfaces once the daemon's handles close), keeping the maps.
pub fn unpin_links(dir: &Path) -> Result<Vec<String>> {
    let mut detached = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(detached);
    };
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if let Some(iface) = name.as_deref().and_then(|n| n.strip_prefix("link_")) {
            fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            detached.push(iface.to_owned());
        }
    }
    Ok(detached)
}

/// The index of `iface` in the calling thread's network namespace.
pub fn ifindex(iface: &str) -> Result<u32> {
    let name = CString::new(iface).with_context(|| format!("interface name {iface:?}"))?;
    // SAFETY: if_nametoindex reads a NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        bail!(
            "no interface {iface} in this network namespace: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(index)
}
