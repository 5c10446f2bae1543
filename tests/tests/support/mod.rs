//! The fixture harness the data-plane fixture tests share: the LB (the real
//! object, loaded) inside a fixture namespace, fed by the real balancer, and
//! the services, clients and frames the tests send. Each test file uses a
//! part of it.
#![allow(dead_code)]

pub mod rig_lb;

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context as _, Result, bail};
use lb_common::hash;
use lb_ctl::{
    balancer::{BackendSpec, BackendState, Balancer, Mode, Protocol, ServiceSpec},
    dataplane::{self, Dataplane},
};
use lb_tests::{
    fixnet::{self, FixtureNet, LB_EXT_MAC},
    fixture::{self, Expect, Outcome},
    packets::{self, Frame, L4, SYN},
    rig,
};

pub const VIP4: &str = "198.18.0.100";
pub const VIP6: &str = "2001:db8::100";

/// The LB inside its fixture namespace, with the balancer that feeds it.
pub struct Lb {
    pub dp: Dataplane,
    pub balancer: Balancer,
    pub ext: u32,
    pub int: u32,
}

/// Runs `test` on a thread inside a fresh fixture namespace.
pub fn with_lb(test: impl FnOnce(&mut Lb) -> Result<()> + Send) {
    with_lb_in(FixtureNet::build().expect("fixture namespace"), test);
}

/// [`with_lb`], with `mtu` on the fixture namespace's links (jumbo frames).
pub fn with_lb_mtu(mtu: u32, test: impl FnOnce(&mut Lb) -> Result<()> + Send) {
    let net = FixtureNet::build().expect("fixture namespace");
    net.set_mtu(mtu).expect("the fixture links' MTU");
    with_lb_in(net, test);
}

fn with_lb_in(net: FixtureNet, test: impl FnOnce(&mut Lb) -> Result<()> + Send) {
    let (ext, int) = (net.ext, net.int);
    net.ns
        .run_in(move || {
            let mut dp = Dataplane::load()?;
            dp.add_tx_port(ext)?;
            dp.add_tx_port(int)?;
            let mut lb = Lb {
                dp,
                balancer: Balancer::new(),
                ext,
                int,
            };
            test(&mut lb)
        })
        .unwrap();
}

impl Lb {
    pub fn configure(&mut self, services: &[ServiceSpec]) -> Result<()> {
        let (next, ops) = self.balancer.plan(services)?;
        self.dp.apply(&ops)?;
        self.balancer = next;
        Ok(())
    }

    pub fn send(&mut self, frame: &[u8], ingress: u32) -> Result<Outcome> {
        let program = dataplane::program(self.dp.ebpf_mut())?;
        fixture::run_on(program, frame, Some(ingress))
    }

    /// Sends from the client side and checks the action and bytes.
    pub fn expect(&mut self, frame: &Frame, ingress: u32, expect: Expect) -> Result<()> {
        let input = frame.build();
        let outcome = self.send(&input, ingress)?;
        if let Some(why) = fixture::mismatch(&input, &expect, &outcome) {
            bail!("{frame:?}: {why}");
        }
        Ok(())
    }

    /// The backend that the user-space Maglev table gives this first packet.
    pub fn predicted(&self, service: &ServiceSpec, frame: &Frame) -> Result<SocketAddr> {
        let id = self
            .balancer
            .service_id(&service.key())
            .context("service not configured")?;
        let table = &self.balancer.tables().maglev[&id];
        let backend = table[hash::maglev_slot(&frame.flow_key()) as usize];
        Ok(self.backend_addr(backend))
    }

    pub fn backend_addr(&self, id: u32) -> SocketAddr {
        let b = self.balancer.tables().backends[&id];
        let ip: IpAddr = if b.family == lb_common::AF_INET {
            IpAddr::from([b.addr[0], b.addr[1], b.addr[2], b.addr[3]])
        } else {
            IpAddr::from(b.addr)
        };
        SocketAddr::new(ip, u16::from_be_bytes(b.port))
    }

    /// Where the program sent a forwarded frame: its destination address
    /// (NAT) or, for DSR, the backend whose MAC it now carries.
    /// The backend the program pinned the flow of `frame` to, confirmed
    /// or not (one packet seen).
    pub fn pinned(&self, frame: &Frame) -> Result<Option<SocketAddr>> {
        let key = frame.flow_key();
        let flow = match self.dp.flow(&key)? {
            Some(flow) => Some(flow),
            None => self.dp.new_flow(&key)?,
        };
        Ok(flow.map(|flow| self.backend_addr(flow.backend)))
    }

    /// The backend of the flow of `frame` in the connection table (a
    /// confirmed flow: the client's second packet was seen).
    pub fn confirmed(&self, frame: &Frame) -> Result<Option<SocketAddr>> {
        let Some(flow) = self.dp.flow(&frame.flow_key())? else {
            return Ok(None);
        };
        Ok(Some(self.backend_addr(flow.backend)))
    }
}

pub fn backend(ip: IpAddr, port: u16) -> BackendSpec {
    BackendSpec {
        addr: SocketAddr::new(ip, port),
        weight: 1,
        state: BackendState::Enabled,
    }
}

/// A service on the VIP of `v6`'s family over the first `n` rig backends.
pub fn service(
    v6: bool,
    protocol: Protocol,
    mode: Mode,
    port: u16,
    backend_port: u16,
    n: usize,
) -> ServiceSpec {
    let vip: IpAddr = if v6 { VIP6 } else { VIP4 }.parse().unwrap();
    ServiceSpec {
        vip,
        port,
        protocol,
        mode,
        backends: (0..n)
            .map(|i| backend(backend_ip(v6, i), backend_port))
            .collect(),
        sorry: None,
    }
}

pub fn backend_ip(v6: bool, i: usize) -> IpAddr {
    if v6 {
        rig::backend_v6(i).into()
    } else {
        rig::backend_v4(i).into()
    }
}

pub fn client(v6: bool, port: u16) -> SocketAddr {
    let ip: IpAddr = if v6 {
        rig::CLIENT_V6.into()
    } else {
        rig::CLIENT_V4.into()
    };
    SocketAddr::new(ip, port)
}

pub fn backend_index(addr: SocketAddr) -> usize {
    (0..fixnet::BACKENDS)
        .find(|&i| backend_ip(addr.is_ipv6(), i) == addr.ip())
        .expect("a rig backend")
}

/// The first packet of a flow from the client to `spec`.
pub fn first(spec: &ServiceSpec, sport: u16, l4: L4) -> Frame {
    Frame::new(
        client(spec.vip.is_ipv6(), sport),
        SocketAddr::new(spec.vip, spec.port),
        l4,
    )
    .macs(packets::CLIENT_MAC, LB_EXT_MAC)
    .payload(b"hello, backend")
}

pub fn l4_of(protocol: Protocol) -> L4 {
    match protocol {
        Protocol::Tcp => SYN,
        Protocol::Udp => L4::Udp,
    }
}

pub const COMBOS: [(bool, Protocol); 4] = [
    (false, Protocol::Tcp),
    (false, Protocol::Udp),
    (true, Protocol::Tcp),
    (true, Protocol::Udp),
];

/// The destination address and port of a forwarded (NAT) frame.
pub fn parse_dst(frame: &[u8]) -> Result<SocketAddr> {
    let packet = etherparse::SlicedPacket::from_ethernet(frame)?;
    let ip: IpAddr = match packet.net {
        Some(etherparse::NetSlice::Ipv4(v4)) => v4.header().destination_addr().into(),
        Some(etherparse::NetSlice::Ipv6(v6)) => v6.header().destination_addr().into(),
        _ => bail!("not IP"),
    };
    let port = match packet.transport {
        Some(etherparse::TransportSlice::Tcp(tcp)) => tcp.destination_port(),
        Some(etherparse::TransportSlice::Udp(udp)) => udp.destination_port(),
        _ => bail!("not TCP or UDP"),
    };
    Ok(SocketAddr::new(ip, port))
}
