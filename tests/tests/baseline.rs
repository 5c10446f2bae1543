//! Packet fixtures for `lb_baseline` and `lb_baseline_lookup`, the
//! benchmark's yardsticks (see docs/benchmarks.md): the NAT rewrite for
//! their one configured service and backend, byte for byte, and nothing
//! else; the second also looks each frame's flow up in the connection
//! table. Needs root.
use std::net::{IpAddr, SocketAddr};

use anyhow::{Context as _, Result};
use aya::maps::HashMap;
use lb_common::{BaselineConfig, Flow, FlowKey, maps};
use lb_ctl::{
    balancer::addr_bytes,
    balancer::family,
    dataplane::{self, Baseline},
};
use lb_tests::{
    fixnet::{self, FixtureNet, LB_EXT_MAC, LB_INT_MAC},
    fixture::{self, Action, Expect},
    packets::{self, ACK, Frame, SYN},
    rig,
};

const VPORT: u16 = 80;
const BPORT: u16 = 8080;

fn vip(v6: bool) -> IpAddr {
    if v6 {
        rig::VIP_V6.into()
    } else {
        rig::VIP_V4.into()
    }
}

fn client(v6: bool) -> SocketAddr {
    let ip: IpAddr = if v6 {
        rig::CLIENT_V6.into()
    } else {
        rig::CLIENT_V4.into()
    };
    SocketAddr::new(ip, 40000)
}

fn backend(v6: bool) -> SocketAddr {
    let ip: IpAddr = if v6 {
        rig::backend_v6(0).into()
    } else {
        rig::backend_v4(0).into()
    };
    SocketAddr::new(ip, BPORT)
}

fn config(v6: bool, ext: u32, int: u32) -> BaselineConfig {
    BaselineConfig {
        vip: addr_bytes(vip(v6)),
        vport: VPORT.to_be_bytes(),
        backend: addr_bytes(backend(v6).ip()),
        bport: BPORT.to_be_bytes(),
        family: family(vip(v6)),
        ext_ifindex: ext,
        int_ifindex: int,
        lb_ext_mac: LB_EXT_MAC,
        lb_int_mac: LB_INT_MAC,
        client_mac: packets::CLIENT_MAC,
        backend_mac: fixnet::backend_mac(0),
        ..BaselineConfig::UNSET
    }
}

/// Runs `test` with each baseline program loaded for `config(ext, int)`,
/// inside a fixture namespace: both forward alike.
fn with_baseline(
    make: impl Fn(u32, u32) -> BaselineConfig + Send + Sync,
    test: impl Fn(&aya::programs::Xdp, u32, u32) -> Result<()> + Send + Sync,
) {
    let net = FixtureNet::build().expect("fixture namespace");
    let (ext, int) = (net.ext, net.int);
    for which in [Baseline::Plain, Baseline::OneLookup] {
        net.ns
            .run_in(|| {
                let mut ebpf = dataplane::load_baseline(&make(ext, int), which)?;
                let program = dataplane::baseline_program(&mut ebpf, which)?;
                assert_eq!(program.info()?.name_as_str(), Some(kernel_name(which)));
                test(program, ext, int).with_context(|| which.program())
            })
            .unwrap();
    }
}

/// The program's name as the kernel keeps it (15 bytes at most).
fn kernel_name(which: Baseline) -> &'static str {
    let name = which.program();
    &name[..name.len().min(15)]
}

fn expect(program: &aya::programs::Xdp, frame: &Frame, ingress: u32, e: Expect) -> Result<()> {
    let input = frame.build();
    let outcome = fixture::run_on(program, &input, Some(ingress))?;
    if let Some(why) = fixture::mismatch(&input, &e, &outcome) {
        anyhow::bail!("{frame:?}: {why}");
    }
    Ok(())
}

#[test]
fn rewrites_to_the_backend_and_back_like_lb_xdp() {
    for v6 in [false, true] {
        with_baseline(
            |ext, int| config(v6, ext, int),
            |program, ext, int| {
                let request = Frame::new(client(v6), SocketAddr::new(vip(v6), VPORT), SYN)
                    .macs(packets::CLIENT_MAC, LB_EXT_MAC)
                    .payload(b"hello, backend");
                let forwarded = request
                    .clone()
                    .dst(backend(v6))
                    .ttl(63)
                    .macs(LB_INT_MAC, fixnet::backend_mac(0));
                expect(
                    program,
                    &request,
                    ext,
                    Expect::Rewritten(Action::Redirect, forwarded.build()),
                )?;
                let reply = Frame::new(backend(v6), client(v6), ACK)
                    .macs(fixnet::backend_mac(0), LB_INT_MAC)
                    .payload(b"hello, client");
                let translated = reply
                    .clone()
                    .src(SocketAddr::new(vip(v6), VPORT))
                    .ttl(63)
                    .macs(LB_EXT_MAC, packets::CLIENT_MAC);
                expect(
                    program,
                    &reply,
                    int,
                    Expect::Rewritten(Action::Redirect, translated.build()),
                )
            },
        );
    }
}

#[test]
fn passes_everything_else_unchanged() {
    with_baseline(
        |ext, int| config(false, ext, int),
        |program, ext, _| {
            let to_vip = Frame::new(client(false), SocketAddr::new(vip(false), VPORT), SYN)
                .macs(packets::CLIENT_MAC, LB_EXT_MAC);
            let others = [
                // Another port, another family, a TTL that expires here.
                to_vip.clone().dst(SocketAddr::new(vip(false), VPORT + 1)),
                Frame::new(client(true), SocketAddr::new(vip(true), VPORT), SYN),
                to_vip.clone().ttl(1),
            ];
            for frame in &others {
                expect(program, frame, ext, Expect::Unchanged(Action::Pass))?;
            }
            let arp = packets::arp_request(rig::CLIENT_V4, fixnet::LB_EXT_V4);
            let outcome = fixture::run_on(program, &arp, Some(ext))?;
            assert_eq!(outcome.action, Action::Pass);
            assert_eq!(outcome.frame, arp);
            Ok(())
        },
    );
}

#[test]
fn unset_forwards_nothing_and_same_interface_gets_xdp_tx() {
    with_baseline(
        |_, _| BaselineConfig::UNSET,
        |program, ext, _| {
            let frame = Frame::new(client(false), SocketAddr::new(vip(false), VPORT), SYN);
            expect(program, &frame, ext, Expect::Unchanged(Action::Pass))
        },
    );
    // Backend behind the interface the request came in on.
    with_baseline(
        |ext, _| config(false, ext, ext),
        |program, ext, _| {
            let frame = Frame::new(client(false), SocketAddr::new(vip(false), VPORT), SYN)
                .macs(packets::CLIENT_MAC, LB_EXT_MAC);
            let expected = frame
                .clone()
                .dst(backend(false))
                .ttl(63)
                .macs(LB_INT_MAC, fixnet::backend_mac(0));
            expect(
                program,
                &frame,
                ext,
                Expect::Rewritten(Action::Tx, expected.build()),
            )
        },
    );
}

#[test]
fn lookup_baseline_finds_each_flow_it_recorded() {
    let net = FixtureNet::build().expect("fixture namespace");
    let (ext, int) = (net.ext, net.int);
    net.ns
        .run_in(|| {
            let which = Baseline::OneLookup;
            let mut ebpf = dataplane::load_baseline(&config(false, ext, int), which)?;
            let request = Frame::new(client(false), SocketAddr::new(vip(false), VPORT), ACK)
                .macs(packets::CLIENT_MAC, LB_EXT_MAC);
            let reply = Frame::new(backend(false), client(false), ACK)
                .macs(fixnet::backend_mac(0), LB_INT_MAC);
            {
                let program = dataplane::baseline_program(&mut ebpf, which)?;
                for _ in 0..3 {
                    let out = fixture::run_on(program, &request.build(), Some(ext))?;
                    assert_eq!(out.action, Action::Redirect);
                    let out = fixture::run_on(program, &reply.build(), Some(int))?;
                    assert_eq!(out.action, Action::Redirect);
                }
            }
            let flows: HashMap<_, FlowKey, Flow> =
                HashMap::try_from(ebpf.map(maps::FLOWS).context("no connection table")?)?;
            let mut keys: Vec<FlowKey> = flows.keys().collect::<Result<_, _>>()?;
            let mut expected = vec![request.flow_key(), reply.flow_key()];
            let order = |k: &FlowKey| (k.src, k.dst, k.sport, k.dport);
            keys.sort_by_key(order);
            expected.sort_by_key(order);
            // One entry per direction, however many frames.
            assert_eq!(keys, expected);
            Ok(())
        })
        .unwrap();
}
