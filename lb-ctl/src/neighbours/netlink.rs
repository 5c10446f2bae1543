//! The edge of neighbour management: routes and neighbour entries through
//! rtnetlink, in the daemon's network namespace. No decisions here (see the
//! parent module).
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use anyhow::{Context as _, Result};
use futures_util::TryStreamExt as _;
use rtnetlink::{
    Handle, RouteMessageBuilder,
    packet_route::{
        AddressFamily,
        neighbour::{
            NeighbourAddress, NeighbourAttribute, NeighbourExtFlags, NeighbourFlags,
            NeighbourMessage, NeighbourState,
        },
        route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteType, RouteVia},
    },
};

use super::{Entry, KernelState, Key, Ops, PROTOCOL, Reading, Route, plan, wanted};

/// An rtnetlink connection (its task runs on the tokio runtime).
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens the connection. Needs a tokio runtime.
    pub fn connect() -> Result<Self> {
        let (connection, handle, _) =
            rtnetlink::new_connection().context("opening an rtnetlink socket")?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// Reads the routes towards `targets` and the neighbour table, makes
    /// the entries they need managed and removes ours that none needs.
    pub async fn sync(&self, targets: &BTreeSet<IpAddr>) -> Reading {
        let routes = self.routes(targets).await;
        let mut errors = Vec::new();
        let mut table = match self.entries().await {
            Ok(table) => table,
            Err(err) => {
                errors.push(format!("{err:#}"));
                return Reading {
                    routes,
                    table: Vec::new(),
                    errors,
                };
            }
        };
        let ops = plan(&wanted(&routes), &table);
        if !ops.is_empty() {
            tracing::debug!(?ops, "neighbour entries");
            errors.extend(self.apply(&ops).await);
            match self.entries().await {
                Ok(after) => table = after,
                Err(err) => errors.push(format!("{err:#}")),
            }
        }
        Reading {
            routes,
            table,
            errors,
        }
    }

    /// The route towards each address (`ip route get`), or why there is
    /// none.
    pub async fn routes(
        &self,
        addresses: &BTreeSet<IpAddr>,
    ) -> BTreeMap<IpAddr, Result<Route, String>> {
        let mut routes = BTreeMap::new();
        for &address in addresses {
            routes.insert(address, self.route(address).await);
        }
        routes
    }

    async fn route(&self, address: IpAddr) -> Result<Route, String> {
        let message = match address {
            IpAddr::V4(v4) => RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(v4, 32)
                .build(),
            IpAddr::V6(v6) => RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(v6, 128)
                .build(),
        };
        let mut answers = self.handle.route().get(message).execute();
        let answer = match answers.try_next().await {
            Ok(Some(answer)) => answer,
            Ok(None) => return Err("the kernel gave no route".into()),
            Err(rtnetlink::Error::NetlinkError(err)) => return Err(err.to_io().to_string()),
            Err(err) => return Err(err.to_string()),
        };
        route_of(&answer)
    }

    /// Every neighbour entry of the namespace (IPv4 and IPv6).
    pub async fn entries(&self) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut dump = self
                .handle
                .neighbours()
                .get()
                .set_address_family(family)
                .execute();
            while let Some(message) = dump
                .try_next()
                .await
                .context("reading the neighbour table")?
            {
                entries.extend(entry_of(&message));
            }
        }
        Ok(entries)
    }

    /// Applies `ops`. Every operation is tried; the failures are returned
    /// with what they were about.
    pub async fn apply(&self, ops: &Ops) -> Vec<String> {
        let mut errors = Vec::new();
        for key in &ops.manage {
            let mut request = self
                .handle
                .neighbours()
                .add(key.ifindex, key.address)
                .state(NeighbourState::None)
                // Not garbage-collected; the kernel probes it and keeps it
                // resolved (managed).
                .flags(NeighbourFlags::ExtLearned)
                .replace();
            let attributes = &mut request.message_mut().attributes;
            attributes.push(NeighbourAttribute::ExtFlags(NeighbourExtFlags::Managed));
            attributes.push(NeighbourAttribute::Protocol(RouteProtocol::from(PROTOCOL)));
            if let Err(err) = request.execute().await {
                errors.push(format!(
                    "making the neighbour entry {} managed: {}",
                    describe(key),
                    netlink_error(&err)
                ));
            }
        }
        for key in &ops.remove {
            let mut message = NeighbourMessage::default();
            message.header.family = family(key.address);
            message.header.ifindex = key.ifindex;
            message
                .attributes
                .push(NeighbourAttribute::Destination(neighbour_address(
                    key.address,
                )));
            if let Err(err) = self.handle.neighbours().del(message).execute().await {
                errors.push(format!(
                    "removing the neighbour entry {}: {}",
                    describe(key),
                    netlink_error(&err)
                ));
            }
        }
        errors
    }
}

/// `198.18.1.11 on int0`.
pub fn describe(key: &Key) -> String {
    format!("{} on {}", key.address, interface_name(key.ifindex))
}

/// The name of an interface of this namespace (its index if it has none).
pub fn interface_name(ifindex: u32) -> String {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: if_indextoname writes at most IF_NAMESIZE bytes into buf.
    let name = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if name.is_null() {
        return format!("interface {ifindex}");
    }
    // SAFETY: on success buf holds a NUL-terminated name.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

fn netlink_error(err: &rtnetlink::Error) -> String {
    match err {
        rtnetlink::Error::NetlinkError(message) => message.to_io().to_string(),
        other => other.to_string(),
    }
}

fn family(address: IpAddr) -> AddressFamily {
    match address {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn neighbour_address(address: IpAddr) -> NeighbourAddress {
    match address {
        IpAddr::V4(v4) => NeighbourAddress::Inet(v4),
        IpAddr::V6(v6) => NeighbourAddress::Inet6(v6),
    }
}

/// The outgoing interface and gateway of an `ip route get` answer.
fn route_of(answer: &RouteMessage) -> Result<Route, String> {
    if answer.header.kind != RouteType::Unicast {
        return Err(format!(
            "the route is of type {:?}, not unicast",
            answer.header.kind
        ));
    }
    let mut ifindex = None;
    let mut gateway = None;
    for attribute in &answer.attributes {
        match attribute {
            RouteAttribute::Oif(index) => ifindex = Some(*index),
            RouteAttribute::Gateway(RouteAddress::Inet(v4)) => gateway = Some(IpAddr::V4(*v4)),
            RouteAttribute::Gateway(RouteAddress::Inet6(v6)) => gateway = Some(IpAddr::V6(*v6)),
            RouteAttribute::Via(RouteVia::Inet(v4)) => gateway = Some(IpAddr::V4(*v4)),
            RouteAttribute::Via(RouteVia::Inet6(v6)) => gateway = Some(IpAddr::V6(*v6)),
            _ => {}
        }
    }
    let ifindex = ifindex.ok_or("the route has no outgoing interface")?;
    Ok(Route { ifindex, gateway })
}

/// A dumped entry, unless it has no IP address (or is a proxy entry).
fn entry_of(message: &NeighbourMessage) -> Option<Entry> {
    if message.header.flags.contains(NeighbourFlags::Proxy) {
        return None;
    }
    let mut address = None;
    let mut managed = false;
    let mut ours = false;
    for attribute in &message.attributes {
        match attribute {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                address = Some(IpAddr::V4(*v4));
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                address = Some(IpAddr::V6(*v6));
            }
            NeighbourAttribute::ExtFlags(flags) => {
                managed = flags.contains(NeighbourExtFlags::Managed);
            }
            NeighbourAttribute::Protocol(protocol) => ours = u8::from(*protocol) == PROTOCOL,
            _ => {}
        }
    }
    let state = match message.header.state {
        NeighbourState::Reachable
        | NeighbourState::Stale
        | NeighbourState::Delay
        | NeighbourState::Probe => KernelState::Valid,
        NeighbourState::Permanent | NeighbourState::Noarp => KernelState::Static,
        NeighbourState::Failed => KernelState::Failed,
        _ => KernelState::Incomplete,
    };
    Some(Entry {
        key: Key {
            ifindex: message.header.ifindex,
            address: address?,
        },
        state,
        managed,
        ours,
    })
}
