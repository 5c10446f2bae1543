//! Between node-local table entries and replicated flows, which name the
//! service and backend by identity (see `record`). Pure.
//!
//! - The active: a flow record from the program (which carries the
//!   backend's address with the entry, so no configuration change can race
//!   it) becomes a [`WireFlow`] by itself ([`from_record`]); a flow table
//!   entry from a dump (a bulk copy) needs the tables to name its backend,
//!   and is stale when its backend's generation moved on ([`from_entry`]).
//! - The standby: a [`WireFlow`] becomes its own flow table entry, with its
//!   own service id, backend id and that backend's generation, and for NAT
//!   its reply table entry ([`to_entries`]); a flow whose service or backend
//!   it does not have is refused, for the caller to count.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use lb_common::{
    AF_INET, AF_INET6, Flow, FlowKey, FlowRecord, IPPROTO_TCP, IPPROTO_UDP, Reply, ServiceKey,
    mode, record_flags,
};

use super::record::WireFlow;
use crate::balancer::{Balancer, Mode, Protocol, ServiceName, Tables, addr_bytes};

/// Why the active's entry or record does not make a replicated flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FromActiveError {
    #[error("address family {0} is neither IPv4 nor IPv6")]
    BadFamily(u8),
    #[error("protocol {0} is neither TCP nor UDP")]
    BadProtocol(u8),
    #[error("mode {0} is neither NAT nor DSR")]
    BadMode(u32),
    #[error("no service {0} in the tables")]
    UnknownService(ServiceName),
    #[error("backend id {id} is not in the tables")]
    UnknownBackend { id: u32 },
    #[error("backend id {id} is of generation {current}, the flow of {pinned}: the flow is stale")]
    Stale { id: u32, pinned: u32, current: u32 },
}

/// Why the standby does not apply a replicated flow (counted by reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotApplied {
    #[error("service {0} is not configured here")]
    UnknownService(ServiceName),
    #[error("service {service} has no {} {backend} here", if *sorry { "sorry server" } else { "backend" })]
    UnknownBackend {
        service: ServiceName,
        backend: SocketAddr,
        sorry: bool,
    },
}

/// The standby's table entries for one replicated flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entries {
    pub flow: (FlowKey, Flow),
    /// NAT only: how the backend's replies get the VIP back.
    pub reply: Option<(FlowKey, Reply)>,
}

/// A flow record from the program's ring.
pub fn from_record(record: &FlowRecord) -> Result<WireFlow, FromActiveError> {
    let key = &record.key;
    let v4 = is_v4(key.family)?;
    Ok(WireFlow {
        protocol: protocol(key.proto)?,
        client: socket(&key.src, key.sport, v4),
        vip: socket(&key.dst, key.dport, v4),
        backend: socket(&record.backend_addr, record.backend_port, v4),
        sorry: record.flags & record_flags::SORRY != 0,
        mode: flow_mode(record.flow.mode)?,
    })
}

/// A flow table entry (from a dump), named through the active's `tables`.
pub fn from_entry(
    key: &FlowKey,
    flow: &Flow,
    tables: &Tables,
) -> Result<WireFlow, FromActiveError> {
    let v4 = is_v4(key.family)?;
    let protocol = protocol(key.proto)?;
    let vip = socket(&key.dst, key.dport, v4);
    let service_key = ServiceKey {
        addr: key.dst,
        port: key.dport,
        proto: key.proto,
        family: key.family,
    };
    let service = tables
        .services
        .get(&service_key)
        .ok_or(FromActiveError::UnknownService(ServiceName {
            protocol,
            vip,
        }))?;
    let backend = tables
        .backends
        .get(&flow.backend)
        .ok_or(FromActiveError::UnknownBackend { id: flow.backend })?;
    if backend.generation != flow.generation {
        return Err(FromActiveError::Stale {
            id: flow.backend,
            pinned: flow.generation,
            current: backend.generation,
        });
    }
    Ok(WireFlow {
        protocol,
        client: socket(&key.src, key.sport, v4),
        vip,
        backend: socket(&backend.addr, backend.port, v4),
        sorry: service.sorry == flow.backend,
        mode: flow_mode(flow.mode)?,
    })
}

/// A bulk copy: the flow table's dump named through the active's `tables`,
/// and the entries left out (stale, or of what the tables no longer hold).
/// The reply table is not copied: the standby derives its NAT entries from
/// the flows ([`to_entries`]).
pub fn from_dump(
    dump: &[(FlowKey, Flow)],
    tables: &Tables,
) -> (Vec<WireFlow>, Vec<FromActiveError>) {
    let mut wires = Vec::with_capacity(dump.len());
    let mut left_out = Vec::new();
    for (key, flow) in dump {
        match from_entry(key, flow, tables) {
            Ok(wire) => wires.push(wire),
            Err(why) => left_out.push(why),
        }
    }
    (wires, left_out)
}

/// The standby's own entries for `wire`, from its `balancer`'s ids and
/// generations.
pub fn to_entries(wire: &WireFlow, balancer: &Balancer) -> Result<Entries, NotApplied> {
    let name = ServiceName {
        protocol: wire.protocol,
        vip: wire.vip,
    };
    let service_key = ServiceKey {
        addr: addr_bytes(wire.vip.ip()),
        port: wire.vip.port().to_be_bytes(),
        proto: protocol_number(wire.protocol),
        family: family(wire.vip.ip()),
    };
    let service_id = balancer
        .service_id(&service_key)
        .ok_or(NotApplied::UnknownService(name))?;
    let unknown_backend = NotApplied::UnknownBackend {
        service: name,
        backend: wire.backend,
        sorry: wire.sorry,
    };
    let backend_id = if wire.sorry {
        balancer.sorry_id(&service_key, wire.backend)
    } else {
        balancer.backend_id(&service_key, wire.backend)
    }
    .ok_or(unknown_backend)?;
    let generation = balancer
        .tables()
        .backends
        .get(&backend_id)
        .ok_or(unknown_backend)?
        .generation;
    let key = FlowKey {
        src: addr_bytes(wire.client.ip()),
        dst: service_key.addr,
        sport: wire.client.port().to_be_bytes(),
        dport: service_key.port,
        proto: service_key.proto,
        family: service_key.family,
        pad: [0; 2],
    };
    let flow = Flow {
        backend: backend_id,
        generation,
        service: service_id,
        mode: match wire.mode {
            Mode::Nat => mode::NAT,
            Mode::Dsr => mode::DSR,
        },
    };
    let reply = (wire.mode == Mode::Nat).then(|| {
        let reply_key = FlowKey {
            src: addr_bytes(wire.backend.ip()),
            dst: key.src,
            sport: wire.backend.port().to_be_bytes(),
            dport: key.sport,
            proto: key.proto,
            family: key.family,
            pad: [0; 2],
        };
        let reply = Reply {
            vip: key.dst,
            vport: key.dport,
            pad: [0; 2],
            service: service_id,
            backend: backend_id,
        };
        (reply_key, reply)
    });
    Ok(Entries {
        flow: (key, flow),
        reply,
    })
}

/// Entries for a batch, ready for the data plane's batch writes, and what
/// was not applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub flows: Vec<(FlowKey, Flow)>,
    pub replies: Vec<(FlowKey, Reply)>,
    pub not_applied: Vec<NotApplied>,
}

/// [`to_entries`] for every flow of a batch.
pub fn to_batch(wires: &[WireFlow], balancer: &Balancer) -> Batch {
    let mut batch = Batch::default();
    for wire in wires {
        match to_entries(wire, balancer) {
            Ok(entries) => {
                batch.flows.push(entries.flow);
                batch.replies.extend(entries.reply);
            }
            Err(why) => batch.not_applied.push(why),
        }
    }
    batch
}

fn is_v4(family: u8) -> Result<bool, FromActiveError> {
    match family {
        AF_INET => Ok(true),
        AF_INET6 => Ok(false),
        other => Err(FromActiveError::BadFamily(other)),
    }
}

fn protocol(proto: u8) -> Result<Protocol, FromActiveError> {
    match proto {
        IPPROTO_TCP => Ok(Protocol::Tcp),
        IPPROTO_UDP => Ok(Protocol::Udp),
        other => Err(FromActiveError::BadProtocol(other)),
    }
}

fn protocol_number(protocol: Protocol) -> u8 {
    match protocol {
        Protocol::Tcp => IPPROTO_TCP,
        Protocol::Udp => IPPROTO_UDP,
    }
}

fn flow_mode(value: u32) -> Result<Mode, FromActiveError> {
    match value {
        mode::NAT => Ok(Mode::Nat),
        mode::DSR => Ok(Mode::Dsr),
        other => Err(FromActiveError::BadMode(other)),
    }
}

fn family(ip: IpAddr) -> u8 {
    crate::balancer::family(ip)
}

fn socket(addr: &[u8; 16], port: [u8; 2], v4: bool) -> SocketAddr {
    let ip = if v4 {
        IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*addr))
    };
    SocketAddr::new(ip, u16::from_be_bytes(port))
}

#[cfg(test)]
mod tests;
