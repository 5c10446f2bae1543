use std::net::SocketAddr;

use lb_common::{Backend, backend_flags};

use super::*;
use crate::{
    balancer::{BackendSpec, BackendState, ServiceSpec},
    replication::record::WireFlow,
};

fn spec(vip: &str, port: u16, mode: Mode, backends: &[&str], sorry: Option<&str>) -> ServiceSpec {
    ServiceSpec {
        vip: vip.parse().unwrap(),
        port,
        protocol: Protocol::Tcp,
        mode,
        backends: backends
            .iter()
            .map(|b| BackendSpec {
                addr: b.parse().unwrap(),
                weight: 1,
                state: BackendState::Enabled,
            })
            .collect(),
        sorry: sorry.map(|s| s.parse().unwrap()),
    }
}

fn web() -> ServiceSpec {
    spec(
        "198.18.0.100",
        80,
        Mode::Nat,
        &["198.18.1.11:8080", "198.18.1.12:8080", "198.18.1.13:8080"],
        Some("198.18.1.99:8080"),
    )
}

fn dns6() -> ServiceSpec {
    ServiceSpec {
        protocol: Protocol::Udp,
        ..spec(
            "2001:db8::100",
            53,
            Mode::Dsr,
            &["[2001:db8:1::11]:53", "[2001:db8:1::12]:53"],
            None,
        )
    }
}

fn planned(steps: &[Vec<ServiceSpec>]) -> Balancer {
    let mut balancer = Balancer::new();
    for wanted in steps {
        balancer = balancer.plan(wanted).unwrap().0;
    }
    balancer
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn wire_v4(backend: &str, sorry: bool) -> WireFlow {
    WireFlow {
        protocol: Protocol::Tcp,
        client: addr("198.18.0.10:40000"),
        vip: addr("198.18.0.100:80"),
        backend: addr(backend),
        sorry,
        mode: Mode::Nat,
    }
}

fn key_v4() -> FlowKey {
    FlowKey {
        src: addr_bytes("198.18.0.10".parse().unwrap()),
        dst: addr_bytes("198.18.0.100".parse().unwrap()),
        sport: 40000u16.to_be_bytes(),
        dport: 80u16.to_be_bytes(),
        proto: IPPROTO_TCP,
        family: AF_INET,
        pad: [0; 2],
    }
}

#[test]
fn a_kernel_record_names_its_backend_by_address() {
    let record = FlowRecord {
        key: key_v4(),
        backend_addr: addr_bytes("198.18.1.12".parse().unwrap()),
        backend_port: 8080u16.to_be_bytes(),
        flags: 0,
        pad: 0,
        pad2: 0,
        flow: Flow {
            backend: 41,
            generation: 9,
            service: 3,
            mode: mode::NAT,
        },
    };
    assert_eq!(from_record(&record), Ok(wire_v4("198.18.1.12:8080", false)));

    let v6 = FlowRecord {
        key: FlowKey {
            src: addr_bytes("2001:db8::10".parse().unwrap()),
            dst: addr_bytes("2001:db8::100".parse().unwrap()),
            sport: 5353u16.to_be_bytes(),
            dport: 53u16.to_be_bytes(),
            proto: IPPROTO_UDP,
            family: AF_INET6,
            pad: [0; 2],
        },
        backend_addr: addr_bytes("2001:db8:1::99".parse().unwrap()),
        backend_port: 53u16.to_be_bytes(),
        flags: record_flags::SORRY,
        pad: 0,
        pad2: 0,
        flow: Flow {
            mode: mode::DSR,
            ..record.flow
        },
    };
    assert_eq!(
        from_record(&v6),
        Ok(WireFlow {
            protocol: Protocol::Udp,
            client: addr("[2001:db8::10]:5353"),
            vip: addr("[2001:db8::100]:53"),
            backend: addr("[2001:db8:1::99]:53"),
            sorry: true,
            mode: Mode::Dsr,
        })
    );

    let mut bad = record;
    bad.key.family = 5;
    assert_eq!(from_record(&bad), Err(FromActiveError::BadFamily(5)));
    let mut bad = record;
    bad.key.proto = 1;
    assert_eq!(from_record(&bad), Err(FromActiveError::BadProtocol(1)));
    let mut bad = record;
    bad.flow.mode = 7;
    assert_eq!(from_record(&bad), Err(FromActiveError::BadMode(7)));
}

#[test]
fn a_dumped_entry_is_named_through_the_tables_unless_stale() {
    let active = planned(&[vec![web(), dns6()]]);
    let tables = active.tables();
    let service = active.service_id(&web().key()).unwrap();
    let id = active
        .backend_id(&web().key(), addr("198.18.1.13:8080"))
        .unwrap();
    let generation = tables.backends[&id].generation;
    let flow = Flow {
        backend: id,
        generation,
        service,
        mode: mode::NAT,
    };
    assert_eq!(
        from_entry(&key_v4(), &flow, tables),
        Ok(wire_v4("198.18.1.13:8080", false))
    );

    let sorry = active
        .sorry_id(&web().key(), addr("198.18.1.99:8080"))
        .unwrap();
    let to_sorry = Flow {
        backend: sorry,
        generation: tables.backends[&sorry].generation,
        ..flow
    };
    assert_eq!(
        from_entry(&key_v4(), &to_sorry, tables),
        Ok(wire_v4("198.18.1.99:8080", true))
    );

    let stale = Flow {
        generation: generation + 1,
        ..flow
    };
    assert_eq!(
        from_entry(&key_v4(), &stale, tables),
        Err(FromActiveError::Stale {
            id,
            pinned: generation + 1,
            current: generation
        })
    );
    let gone = Flow {
        backend: 999,
        ..flow
    };
    assert_eq!(
        from_entry(&key_v4(), &gone, tables),
        Err(FromActiveError::UnknownBackend { id: 999 })
    );
    let mut elsewhere = key_v4();
    elsewhere.dport = 81u16.to_be_bytes();
    assert_eq!(
        from_entry(&elsewhere, &flow, tables)
            .unwrap_err()
            .to_string(),
        "no service tcp/198.18.0.100:81 in the tables"
    );
}

/// The active and the standby reached the same configuration by different
/// paths: their ids and generations differ, and a flow still means the
/// same backend on both.
#[test]
fn the_standby_maps_a_flow_to_its_own_ids_and_generations() {
    let active = planned(&[vec![web(), dns6()]]);
    // The standby had another service first and lost a backend for a
    // while: other service ids, backend ids and generations.
    let other = spec("198.18.0.200", 443, Mode::Nat, &["198.18.1.50:443"], None);
    let mut without_12 = web();
    without_12.backends.remove(1);
    let standby = planned(&[
        vec![other.clone(), dns6()],
        vec![other, dns6(), without_12],
        vec![dns6(), web()],
    ]);
    let backend = addr("198.18.1.12:8080");
    let active_id = active.backend_id(&web().key(), backend).unwrap();
    let standby_id = standby.backend_id(&web().key(), backend).unwrap();
    let standby_service = standby.service_id(&web().key()).unwrap();
    let standby_generation = standby.tables().backends[&standby_id].generation;
    assert_ne!(
        (active.service_id(&web().key()).unwrap(), active_id),
        (standby_service, standby_id),
        "the test needs ids that differ"
    );
    assert_ne!(
        active.tables().backends[&active_id].generation,
        standby_generation
    );

    let entries = to_entries(&wire_v4("198.18.1.12:8080", false), &standby).unwrap();
    let flow = Flow {
        backend: standby_id,
        generation: standby_generation,
        service: standby_service,
        mode: mode::NAT,
    };
    assert_eq!(entries.flow, (key_v4(), flow));
    let reply_key = FlowKey {
        src: addr_bytes(backend.ip()),
        dst: key_v4().src,
        sport: 8080u16.to_be_bytes(),
        dport: 40000u16.to_be_bytes(),
        proto: IPPROTO_TCP,
        family: AF_INET,
        pad: [0; 2],
    };
    let reply = Reply {
        vip: key_v4().dst,
        vport: 80u16.to_be_bytes(),
        pad: [0; 2],
        service: standby_service,
        backend: standby_id,
    };
    assert_eq!(entries.reply, Some((reply_key, reply)));
    assert_eq!(
        standby.tables().backends[&standby_id],
        Backend {
            addr: addr_bytes(backend.ip()),
            port: 8080u16.to_be_bytes(),
            family: AF_INET,
            flags: backend_flags::LIVE,
            generation: standby_generation,
        }
    );
}

#[test]
fn a_dsr_flow_has_no_reply_entry_and_a_sorry_flow_goes_to_the_sorry_server() {
    let standby = planned(&[vec![web(), dns6()]]);
    let wire = WireFlow {
        protocol: Protocol::Udp,
        client: addr("[2001:db8::10]:5353"),
        vip: addr("[2001:db8::100]:53"),
        backend: addr("[2001:db8:1::12]:53"),
        sorry: false,
        mode: Mode::Dsr,
    };
    let entries = to_entries(&wire, &standby).unwrap();
    assert_eq!(entries.reply, None);
    assert_eq!(entries.flow.1.mode, mode::DSR);
    assert_eq!(
        Some(entries.flow.1.backend),
        standby.backend_id(&dns6().key(), wire.backend)
    );

    let entries = to_entries(&wire_v4("198.18.1.99:8080", true), &standby).unwrap();
    assert_eq!(
        Some(entries.flow.1.backend),
        standby.sorry_id(&web().key(), addr("198.18.1.99:8080"))
    );
}

#[test]
fn a_flow_whose_service_or_backend_the_standby_lacks_is_not_applied() {
    let standby = planned(&[vec![dns6()]]);
    let wire = wire_v4("198.18.1.12:8080", false);
    assert_eq!(
        to_entries(&wire, &standby),
        Err(NotApplied::UnknownService(ServiceName {
            protocol: Protocol::Tcp,
            vip: addr("198.18.0.100:80")
        }))
    );
    let standby = planned(&[vec![web()]]);
    let unknown = wire_v4("198.18.1.77:8080", false);
    assert_eq!(
        to_entries(&unknown, &standby).unwrap_err().to_string(),
        "service tcp/198.18.0.100:80 has no backend 198.18.1.77:8080 here"
    );
    // A backend is not a sorry server, nor the other way round.
    assert!(to_entries(&wire_v4("198.18.1.12:8080", true), &standby).is_err());
    assert!(to_entries(&wire_v4("198.18.1.99:8080", false), &standby).is_err());

    let batch = to_batch(
        &[wire, unknown, wire_v4("198.18.1.99:8080", true)],
        &standby,
    );
    assert_eq!(batch.flows.len(), 2);
    assert_eq!(batch.replies.len(), 2);
    assert_eq!(batch.not_applied.len(), 1);
}

#[test]
fn a_flow_goes_from_the_active_record_over_the_wire_to_the_standby_entries() {
    let active = planned(&[vec![web()]]);
    let standby = planned(&[vec![dns6(), web()]]);
    let id = active
        .backend_id(&web().key(), addr("198.18.1.11:8080"))
        .unwrap();
    let record = FlowRecord {
        key: key_v4(),
        backend_addr: addr_bytes("198.18.1.11".parse().unwrap()),
        backend_port: 8080u16.to_be_bytes(),
        flags: 0,
        pad: 0,
        pad2: 0,
        flow: Flow {
            backend: id,
            generation: active.tables().backends[&id].generation,
            service: active.service_id(&web().key()).unwrap(),
            mode: mode::NAT,
        },
    };
    let wire = from_record(&record).unwrap();
    let bytes = crate::replication::record::encode_batch(&[wire]).unwrap();
    let received = crate::replication::record::decode_batch(&bytes).unwrap();
    let batch = to_batch(&received, &standby);
    let standby_id = standby
        .backend_id(&web().key(), addr("198.18.1.11:8080"))
        .unwrap();
    assert_eq!(batch.flows.len(), 1);
    assert_eq!(batch.flows[0].0, record.key);
    assert_eq!(batch.flows[0].1.backend, standby_id);
    assert!(batch.not_applied.is_empty());
}

#[test]
fn a_bulk_copy_names_every_live_entry_and_leaves_stale_ones_out() {
    let active = planned(&[vec![web()]]);
    let tables = active.tables();
    let service = active.service_id(&web().key()).unwrap();
    let entry = |backend: &str, stale: bool| {
        let id = active.backend_id(&web().key(), addr(backend)).unwrap();
        let generation = tables.backends[&id].generation + u32::from(stale);
        Flow {
            backend: id,
            generation,
            service,
            mode: mode::NAT,
        }
    };
    let mut other_client = key_v4();
    other_client.sport = 40001u16.to_be_bytes();
    let dump = [
        (key_v4(), entry("198.18.1.11:8080", false)),
        (other_client, entry("198.18.1.12:8080", true)),
    ];
    let (wires, left_out) = from_dump(&dump, tables);
    assert_eq!(wires, [wire_v4("198.18.1.11:8080", false)]);
    assert!(
        matches!(left_out[..], [FromActiveError::Stale { .. }]),
        "{left_out:?}"
    );
}
