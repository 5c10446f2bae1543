//! ICMP and ICMPv6 errors about a flow (issue 9). Packet fixtures: the
//! real object, run by the kernel (BPF_PROG_TEST_RUN) inside a fixture
//! namespace, on errors of every type built with etherparse, from both ends
//! of NAT and DSR flows, sent by the far end itself or by a router on the
//! way. Expected frames are built independently with etherparse and
//! compared byte for byte; every checksum of the output is also recomputed
//! with etherparse (the rig tests of the real kernel path are in
//! fragments_and_icmp.rs). Needs root.
//!
//! This file: the harness and the frames the cases share; one module per
//! direction, one for what goes to the kernel.
use std::net::{IpAddr, SocketAddr};

use anyhow::{Context as _, Result, bail};
use etherparse::{Icmpv4Type, Icmpv6Type, icmpv4, icmpv6};
use lb_common::Counter;
use lb_ctl::{
    balancer::{BackendSpec, BackendState, Mode, Protocol, ServiceSpec},
    role::Role,
};
use lb_tests::{
    fixnet::{self, LB_EXT_MAC, LB_INT_MAC},
    fixture::{self, Action, Expect},
    packets::{self, ACK, Frame, IcmpKind, L4, SYN},
    rig,
};

#[path = "../support/mod.rs"]
mod support;

use support::{COMBOS, Lb, VIP4, VIP6, with_lb};

mod from_backend;
mod from_client;
mod to_the_kernel;

/// A router between the client and the LB, and one between the LB and the
/// backends.
const CLIENT_ROUTER4: &str = "198.18.0.254";
const CLIENT_ROUTER6: &str = "2001:db8::fe";
const BACKEND_ROUTER4: &str = "198.18.1.254";
const BACKEND_ROUTER6: &str = "2001:db8:1::fe";
const ROUTER_MAC: [u8; 6] = [0x02, 0x52, 0x54, 0, 0, 0xfe];

impl Lb {
    /// Opens the flow of `first` and confirms it (its first packet and the
    /// client's next one, forwarded: the flow is in the connection table)
    /// and returns the backend it is pinned to.
    fn open(&mut self, first: &Frame) -> Result<SocketAddr> {
        let next = Frame {
            l4: match first.l4 {
                L4::Tcp { .. } => ACK,
                other => other,
            },
            ..first.clone()
        };
        for packet in [first, &next] {
            let outcome = self.send(&packet.build(), self.ext)?;
            if outcome.action != Action::Redirect {
                bail!("{packet:?}: {:?}, expected Redirect", outcome.action);
            }
        }
        let flow = self
            .dp
            .flow(&first.flow_key())?
            .context("flow not confirmed")?;
        Ok(self.backend_of(flow.backend))
    }

    /// Opens the flow of `first` with its first packet only: the flow is
    /// unconfirmed (a UDP request, a SYN), and errors about it are
    /// translated all the same.
    fn open_unconfirmed(&mut self, first: &Frame) -> Result<SocketAddr> {
        let outcome = self.send(&first.build(), self.ext)?;
        if outcome.action != Action::Redirect {
            bail!("{first:?}: {:?}, expected Redirect", outcome.action);
        }
        if self.dp.flow(&first.flow_key())?.is_some() {
            bail!("{first:?}: confirmed by its first packet");
        }
        let flow = self
            .dp
            .new_flow(&first.flow_key())?
            .context("flow not pinned")?;
        Ok(self.backend_of(flow.backend))
    }

    fn backend_of(&self, id: u32) -> SocketAddr {
        let b = self.balancer.tables().backends[&id];
        let ip: IpAddr = if b.family == lb_common::AF_INET {
            IpAddr::from([b.addr[0], b.addr[1], b.addr[2], b.addr[3]])
        } else {
            IpAddr::from(b.addr)
        };
        SocketAddr::new(ip, u16::from_be_bytes(b.port))
    }

    /// Runs every case received on `ingress`; fails with every case that
    /// did not hold. The output of a forwarded case must also pass
    /// etherparse's checksums; returns how many of those held a whole quote
    /// (whose TCP or UDP checksum was checked too).
    fn check(&mut self, ingress: u32, cases: &[Case]) -> Result<usize> {
        let mut failures = Vec::new();
        let mut whole = 0;
        for case in cases {
            let outcome = self.send(&case.frame, ingress)?;
            if let Some(why) = fixture::mismatch(&case.frame, &case.expect, &outcome) {
                failures.push(format!("- {}: {why}", case.name));
            } else if outcome.action == Action::Redirect {
                match packets::verify_icmp_checksums(&outcome.frame) {
                    Ok(checked) => whole += usize::from(checked.l4),
                    Err(why) => failures.push(format!("- {}: {why:#}", case.name)),
                }
            }
        }
        if !failures.is_empty() {
            bail!(
                "{} of {} cases failed:\n{}",
                failures.len(),
                cases.len(),
                failures.join("\n")
            );
        }
        Ok(whole)
    }
}

type Case = fixture::Case;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("a valid address")
}

/// A NAT or DSR service on the VIP of `v6`'s family over the first three
/// rig backends: TCP 80 (NAT: to 8080) or UDP 53 (NAT: to 6001).
fn service(v6: bool, protocol: Protocol, mode: Mode) -> ServiceSpec {
    let port = match protocol {
        Protocol::Tcp => 80,
        Protocol::Udp => 53,
    };
    let backend_port = match (mode, protocol) {
        (Mode::Dsr, _) => port,
        (Mode::Nat, Protocol::Tcp) => 8080,
        (Mode::Nat, Protocol::Udp) => 6001,
    };
    ServiceSpec {
        vip: ip(if v6 { VIP6 } else { VIP4 }),
        port,
        protocol,
        mode,
        backends: (0..3)
            .map(|i| BackendSpec {
                addr: SocketAddr::new(backend_ip(v6, i), backend_port),
                weight: 1,
                state: BackendState::Enabled,
            })
            .collect(),
        sorry: None,
    }
}

fn backend_ip(v6: bool, i: usize) -> IpAddr {
    if v6 {
        rig::backend_v6(i).into()
    } else {
        rig::backend_v4(i).into()
    }
}

fn backend_mac(addr: SocketAddr) -> [u8; 6] {
    let i = (0..fixnet::BACKENDS)
        .find(|&i| backend_ip(addr.is_ipv6(), i) == addr.ip())
        .expect("a rig backend");
    fixnet::backend_mac(i)
}

fn client_ip(v6: bool) -> IpAddr {
    if v6 {
        rig::CLIENT_V6.into()
    } else {
        rig::CLIENT_V4.into()
    }
}

/// The first packet of a flow from the client to `spec`.
fn first(spec: &ServiceSpec, sport: u16) -> Frame {
    let l4 = match spec.protocol {
        Protocol::Tcp => SYN,
        Protocol::Udp => L4::Udp,
    };
    Frame::new(
        SocketAddr::new(client_ip(spec.vip.is_ipv6()), sport),
        SocketAddr::new(spec.vip, spec.port),
        l4,
    )
    .macs(packets::CLIENT_MAC, LB_EXT_MAC)
    .payload(b"hello, backend")
}

/// The IP packet (no Ethernet header) of a frame.
fn ip_packet(frame: &Frame) -> Vec<u8> {
    frame.build()[14..].to_vec()
}

/// How much of the packet an error quotes.
#[derive(Clone, Copy, Debug)]
enum Quote {
    /// All of it (as Linux does, up to 576 or 1280 bytes).
    Whole,
    /// The IP header and 8 bytes (RFC 792's minimum): the ports, and of the
    /// checksums only UDP's.
    Cut,
}

fn quote(frame: &Frame, how: Quote) -> Vec<u8> {
    let mut packet = ip_packet(frame);
    if let Quote::Cut = how {
        let ip_header = if frame.src.is_ipv6() { 40 } else { 20 };
        packet.truncate(ip_header + 8);
    }
    packet
}

/// Every ICMP error type and code of `v6`'s family.
fn errors(v6: bool) -> Vec<(String, IcmpKind)> {
    if v6 {
        use icmpv6::{DestUnreachableCode as U, ParameterProblemCode, TimeExceededCode};
        let mut all: Vec<(String, IcmpKind)> = [
            U::NoRoute,
            U::Prohibited,
            U::BeyondScope,
            U::Address,
            U::Port,
            U::SourceAddressFailedPolicy,
            U::RejectRoute,
        ]
        .into_iter()
        .map(|code| {
            (
                format!("unreachable {code:?}"),
                IcmpKind::V6(Icmpv6Type::DestinationUnreachable(code)),
            )
        })
        .collect();
        all.extend([
            (
                "packet too big".into(),
                IcmpKind::V6(Icmpv6Type::PacketTooBig { mtu: 1280 }),
            ),
            (
                "hop limit exceeded".into(),
                IcmpKind::V6(Icmpv6Type::TimeExceeded(TimeExceededCode::HopLimitExceeded)),
            ),
            (
                "reassembly time exceeded".into(),
                IcmpKind::V6(Icmpv6Type::TimeExceeded(
                    TimeExceededCode::FragmentReassemblyTimeExceeded,
                )),
            ),
            (
                "parameter problem".into(),
                IcmpKind::V6(Icmpv6Type::ParameterProblem(
                    icmpv6::ParameterProblemHeader {
                        code: ParameterProblemCode::ErroneousHeaderField,
                        pointer: 6,
                    },
                )),
            ),
        ]);
        all
    } else {
        use icmpv4::{DestUnreachableHeader as U, ParameterProblemHeader, TimeExceededCode};
        let mut all: Vec<(String, IcmpKind)> = [
            U::Network,
            U::Host,
            U::Protocol,
            U::Port,
            U::FragmentationNeeded { next_hop_mtu: 1400 },
            U::SourceRouteFailed,
            U::NetworkUnknown,
            U::HostUnknown,
            U::Isolated,
            U::NetworkProhibited,
            U::HostProhibited,
            U::TosNetwork,
            U::TosHost,
            U::FilterProhibited,
            U::HostPrecedenceViolation,
            U::PrecedenceCutoff,
        ]
        .into_iter()
        .map(|code| {
            (
                format!("unreachable {code:?}"),
                IcmpKind::V4(Icmpv4Type::DestinationUnreachable(code)),
            )
        })
        .collect();
        all.extend([
            (
                "ttl exceeded".into(),
                IcmpKind::V4(Icmpv4Type::TimeExceeded(
                    TimeExceededCode::TtlExceededInTransit,
                )),
            ),
            (
                "reassembly time exceeded".into(),
                IcmpKind::V4(Icmpv4Type::TimeExceeded(
                    TimeExceededCode::FragmentReassemblyTimeExceeded,
                )),
            ),
            (
                "parameter problem, pointer".into(),
                IcmpKind::V4(Icmpv4Type::ParameterProblem(
                    ParameterProblemHeader::PointerIndicatesError(8),
                )),
            ),
            (
                "parameter problem, bad length".into(),
                IcmpKind::V4(Icmpv4Type::ParameterProblem(
                    ParameterProblemHeader::BadLength,
                )),
            ),
        ]);
        all
    }
}

/// A NAT flow's packet as the backend got it (client to backend, TTL 63),
/// and the same packet as the client sent it, its TTL as quoted.
fn nat_request(first: &Frame, backend: SocketAddr) -> (Frame, Frame) {
    (first.clone().dst(backend).ttl(63), first.clone().ttl(63))
}

/// The service's reply as the client's side of the path saw it (VIP to
/// client).
fn service_reply(first: &Frame) -> Frame {
    let l4 = match first.l4 {
        L4::Tcp { .. } => ACK,
        L4::Udp => L4::Udp,
    };
    Frame::new(first.dst, first.src, l4)
        .ttl(62)
        .payload(&[7; 1200])
}

/// The cases that quote a whole packet (with a TCP or UDP checksum).
fn whole_quotes(cases: &[Case]) -> usize {
    cases
        .iter()
        .filter(|c| c.name.ends_with("Whole quote"))
        .count()
}
