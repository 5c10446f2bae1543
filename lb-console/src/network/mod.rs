//! The node's network interfaces for the Network > Interfaces page, read
//! and edited through rtnetlink in the console's network namespace (the
//! node's). [`interfaces`] is pure: it turns the kernel's link and address
//! messages into what the page shows (tested with messages built here);
//! [`edit`] is pure too: a form into the one change to make; [`read`] and
//! [`apply`] are the thin edges that ask the kernel, bounded in time. An
//! answer that cannot be read is an error shown as unknown, never a guessed
//! value.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use futures_util::TryStreamExt as _;
use rtnetlink::packet_route::{
    address::{AddressAttribute, AddressMessage},
    link::{LinkAttribute, LinkFlags, LinkMessage, State},
};

pub mod edit;

/// How long reading the interfaces (or making one change) may take.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// One interface as the page shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub index: u32,
    pub name: String,
    /// The link-layer address, `aa:bb:cc:dd:ee:ff`; `None` when the link has
    /// none.
    pub mac: Option<String>,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// The lower layer is up (`IFF_LOWER_UP`: carrier).
    pub carrier: bool,
    /// The kernel's operational state (`up`, `down`, `unknown`,
    /// `lowerlayerdown`...); `None` when the kernel did not say.
    pub oper: Option<String>,
    pub mtu: Option<u32>,
    /// The smallest and largest MTU the driver takes (`IFLA_MIN_MTU`,
    /// `IFLA_MAX_MTU`); `None` when the kernel did not say or said 0 (no
    /// limit of its own).
    pub min_mtu: Option<u32>,
    pub max_mtu: Option<u32>,
    pub ipv4: Vec<Ipv4>,
    /// IPv6 addresses with their prefix lengths.
    pub ipv6: Vec<(Ipv6Addr, u8)>,
}

/// An IPv4 address of an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4 {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub broadcast: Option<Ipv4Addr>,
}

impl Ipv4 {
    /// The prefix as a dotted mask (`255.255.255.0` for 24).
    pub fn mask(&self) -> Ipv4Addr {
        let prefix = u32::from(self.prefix.min(32));
        Ipv4Addr::from(u32::MAX.checked_shl(32 - prefix).unwrap_or(0))
    }
}

/// `aa:bb:cc:dd:ee:ff` (any length; empty is `None`).
fn mac(bytes: &[u8]) -> Option<String> {
    if bytes.is_empty() {
        return None;
    }
    Some(
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

fn oper(state: &State) -> String {
    match state {
        State::Up => "up".to_owned(),
        State::Down => "down".to_owned(),
        // IF_OPER_UNKNOWN: the driver does not report one (loopback).
        State::Unknown => "not reported by the driver".to_owned(),
        State::NotPresent => "not present".to_owned(),
        State::LowerLayerDown => "lower layer down".to_owned(),
        State::Testing => "testing".to_owned(),
        State::Dormant => "dormant".to_owned(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// The interfaces described by `links` with their `addresses`, in the
/// kernel's index order. A link without a name is left out (the kernel
/// always sends one); an address of an index no link has is left out.
pub fn interfaces(links: &[LinkMessage], addresses: &[AddressMessage]) -> Vec<Interface> {
    let mut out: Vec<Interface> = links
        .iter()
        .filter_map(|link| {
            let mut name = None;
            let mut iface = Interface {
                index: link.header.index,
                name: String::new(),
                mac: None,
                up: link.header.flags.contains(LinkFlags::Up),
                carrier: link.header.flags.contains(LinkFlags::LowerUp),
                oper: None,
                mtu: None,
                min_mtu: None,
                max_mtu: None,
                ipv4: Vec::new(),
                ipv6: Vec::new(),
            };
            for attribute in &link.attributes {
                match attribute {
                    LinkAttribute::IfName(n) => name = Some(n.clone()),
                    LinkAttribute::Address(bytes) => iface.mac = mac(bytes),
                    LinkAttribute::Mtu(mtu) => iface.mtu = Some(*mtu),
                    LinkAttribute::MinMtu(m) => iface.min_mtu = Some(*m).filter(|m| *m > 0),
                    LinkAttribute::MaxMtu(m) => iface.max_mtu = Some(*m).filter(|m| *m > 0),
                    LinkAttribute::OperState(state) => iface.oper = Some(oper(state)),
                    _ => {}
                }
            }
            iface.name = name?;
            Some(iface)
        })
        .collect();
    out.sort_by_key(|i| i.index);
    for message in addresses {
        let Some(iface) = out.iter_mut().find(|i| i.index == message.header.index) else {
            continue;
        };
        let prefix = message.header.prefix_len;
        // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the
        // same, or the far end of a point-to-point link.
        let mut local = None;
        let mut address = None;
        let mut broadcast = None;
        for attribute in &message.attributes {
            match attribute {
                AddressAttribute::Local(a) => local = Some(*a),
                AddressAttribute::Address(a) => address = Some(*a),
                AddressAttribute::Broadcast(b) => broadcast = Some(*b),
                _ => {}
            }
        }
        match local.or(address) {
            Some(IpAddr::V4(address)) => iface.ipv4.push(Ipv4 {
                address,
                prefix,
                broadcast,
            }),
            Some(IpAddr::V6(address)) => iface.ipv6.push((address, prefix)),
            None => {}
        }
    }
    out
}

/// Reads this namespace's interfaces now (at most [`TIMEOUT`]); the error
/// says what could not be read. Needs a tokio runtime.
pub async fn read() -> Result<Vec<Interface>, String> {
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(|e| format!("cannot open an rtnetlink socket: {e}"))?;
    let task = tokio::spawn(connection);
    let dump = async {
        let links: Vec<LinkMessage> = handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| format!("reading the interfaces over rtnetlink: {e}"))?;
        let addresses: Vec<AddressMessage> =
            handle
                .address()
                .get()
                .execute()
                .try_collect()
                .await
                .map_err(|e| format!("reading the addresses over rtnetlink: {e}"))?;
        Ok(interfaces(&links, &addresses))
    };
    let result = tokio::time::timeout(TIMEOUT, dump)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "rtnetlink did not answer within {} s",
                TIMEOUT.as_secs()
            ))
        });
    task.abort();
    result
}

/// The kernel's refusal, as a sentence (`Invalid argument (os error 22)`).
fn kernel_error(e: rtnetlink::Error) -> String {
    match e {
        rtnetlink::Error::NetlinkError(m) => format!("the kernel refused it: {}", m.to_io()),
        other => format!("rtnetlink: {other}"),
    }
}

/// Makes the change of `plan` in this namespace (at most [`TIMEOUT`]): one
/// rtnetlink request, so the kernel takes it whole or not at all; the
/// error says why not. Needs a tokio runtime.
pub async fn apply(plan: &edit::Plan) -> Result<(), String> {
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(|e| format!("cannot open an rtnetlink socket: {e}"))?;
    let task = tokio::spawn(connection);
    let index = plan.index;
    let change = async {
        match plan.edit {
            edit::Edit::Mtu { mtu } => handle
                .link()
                .set(
                    rtnetlink::LinkUnspec::new_with_index(index)
                        .mtu(mtu)
                        .build(),
                )
                .execute()
                .await
                .map_err(kernel_error),
            edit::Edit::AddAddress { address, prefix } => handle
                .address()
                .add(index, address, prefix)
                .execute()
                .await
                .map_err(kernel_error),
            edit::Edit::DeleteAddress { address, prefix } => {
                // The kernel's own message for it, as the dump gives it.
                let all: Vec<AddressMessage> = handle
                    .address()
                    .get()
                    .set_link_index_filter(index)
                    .execute()
                    .try_collect()
                    .await
                    .map_err(|e| format!("reading the addresses over rtnetlink: {e}"))?;
                let message = all
                    .into_iter()
                    .find(|m| {
                        m.header.index == index
                            && m.header.prefix_len == prefix
                            && local_of(m) == Some(address)
                    })
                    .ok_or_else(|| {
                        format!(
                            "{} has no address {address}/{prefix} (any more)",
                            plan.interface
                        )
                    })?;
                handle
                    .address()
                    .del(message)
                    .execute()
                    .await
                    .map_err(kernel_error)
            }
        }
    };
    let result = tokio::time::timeout(TIMEOUT, change)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "rtnetlink did not answer within {} s",
                TIMEOUT.as_secs()
            ))
        });
    task.abort();
    result
}

/// An address message's own address (IFA_LOCAL, else IFA_ADDRESS).
fn local_of(message: &AddressMessage) -> Option<IpAddr> {
    let mut address = None;
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Local(a) => return Some(*a),
            AddressAttribute::Address(a) => address = Some(*a),
            _ => {}
        }
    }
    address
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_route::AddressFamily;

    fn link(index: u32, flags: LinkFlags, attributes: Vec<LinkAttribute>) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = flags;
        m.attributes = attributes;
        m
    }

    fn address(index: u32, prefix: u8, attributes: Vec<AddressAttribute>) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.index = index;
        m.header.prefix_len = prefix;
        m.header.family = match attributes.first() {
            Some(AddressAttribute::Address(IpAddr::V6(_))) => AddressFamily::Inet6,
            _ => AddressFamily::Inet,
        };
        m.attributes = attributes;
        m
    }

    #[test]
    fn links_and_addresses_become_interfaces_in_index_order() {
        let links = [
            link(
                3,
                LinkFlags::Up,
                vec![
                    LinkAttribute::IfName("int0".into()),
                    LinkAttribute::Address(vec![0x02, 0, 0, 0, 0, 0xab]),
                    LinkAttribute::Mtu(9000),
                    LinkAttribute::MinMtu(68),
                    LinkAttribute::MaxMtu(65535),
                    LinkAttribute::OperState(State::LowerLayerDown),
                ],
            ),
            link(
                1,
                LinkFlags::Up | LinkFlags::LowerUp | LinkFlags::Loopback,
                vec![
                    LinkAttribute::IfName("lo".into()),
                    LinkAttribute::Address(vec![0; 6]),
                    LinkAttribute::Mtu(65536),
                    LinkAttribute::MinMtu(0),
                    LinkAttribute::MaxMtu(0),
                    LinkAttribute::OperState(State::Unknown),
                ],
            ),
            // No name: left out.
            link(7, LinkFlags::Up, vec![LinkAttribute::Mtu(1500)]),
            link(
                2,
                LinkFlags::empty(),
                vec![LinkAttribute::IfName("ext0".into())],
            ),
        ];
        let addresses = [
            address(
                1,
                8,
                vec![
                    AddressAttribute::Address("127.0.0.1".parse().unwrap()),
                    AddressAttribute::Local("127.0.0.1".parse().unwrap()),
                ],
            ),
            address(
                1,
                128,
                vec![AddressAttribute::Address("::1".parse().unwrap())],
            ),
            // Point-to-point: the local address is ours, the other the peer's.
            address(
                3,
                24,
                vec![
                    AddressAttribute::Address("198.18.1.2".parse().unwrap()),
                    AddressAttribute::Local("198.18.1.1".parse().unwrap()),
                    AddressAttribute::Broadcast("198.18.1.255".parse().unwrap()),
                ],
            ),
            address(
                3,
                64,
                vec![AddressAttribute::Address("2001:db8::1".parse().unwrap())],
            ),
            // An index no link has: left out.
            address(
                9,
                24,
                vec![AddressAttribute::Local("198.18.9.1".parse().unwrap())],
            ),
        ];
        let got = interfaces(&links, &addresses);
        assert_eq!(
            got,
            [
                Interface {
                    index: 1,
                    name: "lo".into(),
                    mac: Some("00:00:00:00:00:00".into()),
                    up: true,
                    carrier: true,
                    oper: Some("not reported by the driver".into()),
                    mtu: Some(65536),
                    min_mtu: None,
                    max_mtu: None,
                    ipv4: vec![Ipv4 {
                        address: Ipv4Addr::new(127, 0, 0, 1),
                        prefix: 8,
                        broadcast: None
                    }],
                    ipv6: vec![(Ipv6Addr::LOCALHOST, 128)],
                },
                Interface {
                    index: 2,
                    name: "ext0".into(),
                    mac: None,
                    up: false,
                    carrier: false,
                    oper: None,
                    mtu: None,
                    min_mtu: None,
                    max_mtu: None,
                    ipv4: vec![],
                    ipv6: vec![],
                },
                Interface {
                    index: 3,
                    name: "int0".into(),
                    mac: Some("02:00:00:00:00:ab".into()),
                    up: true,
                    carrier: false,
                    oper: Some("lower layer down".into()),
                    mtu: Some(9000),
                    min_mtu: Some(68),
                    max_mtu: Some(65535),
                    ipv4: vec![Ipv4 {
                        address: Ipv4Addr::new(198, 18, 1, 1),
                        prefix: 24,
                        broadcast: Some(Ipv4Addr::new(198, 18, 1, 255))
                    }],
                    ipv6: vec![("2001:db8::1".parse().unwrap(), 64)],
                },
            ]
        );
    }

    #[test]
    fn masks_of_every_prefix() {
        let mask = |prefix| {
            Ipv4 {
                address: Ipv4Addr::UNSPECIFIED,
                prefix,
                broadcast: None,
            }
            .mask()
        };
        assert_eq!(mask(0), Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(mask(8), Ipv4Addr::new(255, 0, 0, 0));
        assert_eq!(mask(23), Ipv4Addr::new(255, 255, 254, 0));
        assert_eq!(mask(32), Ipv4Addr::new(255, 255, 255, 255));
    }

    #[tokio::test]
    async fn this_namespaces_loopback_is_read() {
        let all = read().await.unwrap();
        let lo = all.iter().find(|i| i.name == "lo").unwrap();
        assert!(lo.up);
        assert_eq!(lo.mtu, Some(65536));
        assert!(
            lo.ipv4
                .iter()
                .any(|a| a.address == Ipv4Addr::LOCALHOST && a.prefix == 8)
        );
    }
}
