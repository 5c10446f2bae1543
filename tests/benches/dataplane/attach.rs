//! The programs under test on the rig: `lb_xdp` loaded afresh in the LB
//! namespace with an active's lease and the rig's services (NAT VIP:port
//! -> b1:port), or a baseline program configured with the rig's own
//! addresses, MACs and interface indexes, attached natively to both of the
//! LB's interfaces and detached when dropped; and the shared lookup of a
//! loaded XDP program by name.
use std::net::{IpAddr, SocketAddr};

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf,
    programs::{Xdp, XdpMode},
};
use lb_common::{AF_INET, BaselineConfig};
use lb_ctl::{
    balancer::{BackendSpec, BackendState, Balancer, Mode, Protocol, ServiceSpec, addr_bytes},
    dataplane::{self, AttachMode, Baseline, Dataplane},
};
use lb_tests::{
    netns::Netns,
    rig::{Rig, VIP_V4},
};

pub(super) const HTTP_PORT: u16 = 80;
pub(super) const IPERF_PORT: u16 = 5201;

/// A loaded XDP program of `ebpf`, shared (so that maps can be read while
/// it runs).
pub(super) fn xdp<'a>(ebpf: &'a Ebpf, name: &str) -> Result<&'a Xdp> {
    let program = ebpf
        .program(name)
        .with_context(|| format!("program {name} missing from the object"))?;
    Ok(program.try_into()?)
}

/// `lb_xdp` on the rig's LB (native, on both of its interfaces, with an
/// active's lease), NAT VIP:80 and VIP:5201 -> b1. Detached when dropped.
pub(super) fn attach_lb(rig: &Rig) -> Result<Dataplane> {
    let b1 = rig.backends[0].v4;
    let services: Vec<ServiceSpec> = [HTTP_PORT, IPERF_PORT]
        .iter()
        .map(|&port| ServiceSpec {
            vip: IpAddr::from(VIP_V4),
            port,
            protocol: Protocol::Tcp,
            mode: Mode::Nat,
            backends: vec![BackendSpec {
                addr: SocketAddr::new(b1.into(), port),
                weight: 1,
                state: BackendState::Enabled,
            }],
            sorry: None,
        })
        .collect();
    Ok(lb_on_rig(rig, &services)?.0)
}

/// `lb_xdp` loaded afresh in the rig's LB namespace with an active's lease,
/// attached natively to both of its interfaces, with `services` and the
/// balancer that planned them. Detached when dropped.
pub(crate) fn lb_on_rig(rig: &Rig, services: &[ServiceSpec]) -> Result<(Dataplane, Balancer)> {
    let lb = rig.lb();
    let mut dp = lb.ns.run_in(|| {
        let mut dp = Dataplane::load()?;
        lease_as_clustered(&mut dp)?;
        dp.attach(lb.ext_iface, AttachMode::Native)?;
        dp.attach(lb.int_iface, AttachMode::Native)?;
        Ok(dp)
    })?;
    let (balancer, ops) = Balancer::new().plan(services)?;
    dp.apply(&ops)?;
    Ok((dp, balancer))
}

/// Baseline program `which` attached (native) to the LB's two interfaces,
/// forwarding VIP:port <-> b1:port.
pub(super) fn attach_baseline(rig: &Rig, port: u16, which: Baseline) -> Result<Ebpf> {
    let config = rig_baseline_config(rig, port)?;
    rig.lb().ns.run_in(|| {
        let mut ebpf = dataplane::load_baseline(&config, which)?;
        let program = dataplane::baseline_program(&mut ebpf, which)?;
        for iface in [rig.lb().ext_iface, rig.lb().int_iface] {
            program
                .attach(iface, XdpMode::Driver)
                .with_context(|| format!("attaching {} to {iface}", which.program()))?;
        }
        Ok(ebpf)
    })
}

/// The baseline for the rig: VIP:port <-> b1:port with the rig's own MACs
/// and interface indexes.
fn rig_baseline_config(rig: &Rig, port: u16) -> Result<BaselineConfig> {
    let (ext_ifindex, int_ifindex) = rig.lb().ns.run_in(|| {
        Ok((
            dataplane::ifindex(rig.lb().ext_iface)?,
            dataplane::ifindex(rig.lb().int_iface)?,
        ))
    })?;
    let b1 = &rig.backends[0];
    Ok(BaselineConfig {
        vip: addr_bytes(VIP_V4.into()),
        vport: port.to_be_bytes(),
        backend: addr_bytes(b1.v4.into()),
        bport: port.to_be_bytes(),
        family: AF_INET,
        ext_ifindex,
        int_ifindex,
        lb_ext_mac: mac_of(&rig.lb().ns, rig.lb().ext_iface)?,
        lb_int_mac: mac_of(&rig.lb().ns, rig.lb().int_iface)?,
        client_mac: mac_of(&rig.client, "eth0")?,
        backend_mac: mac_of(&b1.ns, "eth0")?,
        ..BaselineConfig::UNSET
    })
}

/// The MAC of `iface` in `ns`, from `ip -j link`.
pub(super) fn mac_of(ns: &Netns, iface: &str) -> Result<[u8; 6]> {
    let out = ns.ip(["-j", "link", "show", "dev", iface])?;
    let links: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let text = links[0]["address"]
        .as_str()
        .with_context(|| format!("no address for {iface} in {}", ns.name()))?;
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        bail!("MAC {text:?} of {iface}");
    }
    for (byte, part) in mac.iter_mut().zip(parts) {
        *byte = u8::from_str_radix(part, 16).with_context(|| format!("MAC {text:?}"))?;
    }
    Ok(mac)
}

/// Gives `dp` an active's lease an hour ahead, as a clustered node's event
/// loop keeps it: the figures are of the program on the way it runs in
/// production, where every packet checks the lease (self-fencing).
pub(super) fn lease_as_clustered(dp: &mut Dataplane) -> Result<()> {
    dp.set_lease(lb_ctl::dataplane::monotonic_ns() + 3_600_000_000_000)
        .context("setting a lease an hour ahead")
}
