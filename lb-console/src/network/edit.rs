//! Editing an interface (Network > Interfaces): its MTU, and adding or
//! deleting an IPv4/IPv6 address with its prefix length. Pure: a form and
//! the interfaces as rtnetlink gave them just now in, the [`Plan`] of the
//! one change out (or the field refused, with why); `super::apply` carries
//! it out. Per node: nothing here is replicated to the other node.
use std::net::{IpAddr, Ipv4Addr};

use super::Interface;
use crate::forms::{FieldError, Form};

/// Which form was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum What {
    Mtu,
    AddAddress,
    DeleteAddress,
}

impl What {
    /// The form's path (`POST /network/...`).
    pub fn from_path(path: &str) -> Option<What> {
        match path {
            "/network/mtu" => Some(What::Mtu),
            "/network/address/add" => Some(What::AddAddress),
            "/network/address/delete" => Some(What::DeleteAddress),
            _ => None,
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            What::Mtu => "/network/mtu",
            What::AddAddress => "/network/address/add",
            What::DeleteAddress => "/network/address/delete",
        }
    }

    /// The audit trail's action.
    pub fn action(self) -> &'static str {
        match self {
            What::Mtu => "interface mtu",
            What::AddAddress => "address add",
            What::DeleteAddress => "address delete",
        }
    }

    /// The field a refusal (the console's or the kernel's) is shown by.
    pub fn field(self) -> &'static str {
        match self {
            What::Mtu => "mtu",
            What::AddAddress | What::DeleteAddress => "address",
        }
    }
}

/// The one change to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    Mtu { mtu: u32 },
    AddAddress { address: IpAddr, prefix: u8 },
    DeleteAddress { address: IpAddr, prefix: u8 },
}

/// What a form would do: the interface (its index at the time it was
/// read), the change, and, when the change may cut the console off from
/// the browser that asked, why (it is then made only once confirmed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub interface: String,
    pub index: u32,
    pub edit: Edit,
    pub cuts_off: Option<String>,
}

impl Plan {
    pub fn what(&self) -> What {
        match self.edit {
            Edit::Mtu { .. } => What::Mtu,
            Edit::AddAddress { .. } => What::AddAddress,
            Edit::DeleteAddress { .. } => What::DeleteAddress,
        }
    }

    /// The audit trail's detail, as `ip` would be told: `ext0 mtu 1400`,
    /// `ext0 198.18.1.1/24`.
    pub fn detail(&self) -> String {
        match &self.edit {
            Edit::Mtu { mtu } => format!("{} mtu {mtu}", self.interface),
            Edit::AddAddress { address, prefix } | Edit::DeleteAddress { address, prefix } => {
                format!("{} {address}/{prefix}", self.interface)
            }
        }
    }

    /// What it does, in words (the confirmation's question).
    pub fn describe(&self) -> String {
        match &self.edit {
            Edit::Mtu { mtu } => format!("Set the MTU of {} to {mtu}", self.interface),
            Edit::AddAddress { address, prefix } => {
                format!("Add {address}/{prefix} to {}", self.interface)
            }
            Edit::DeleteAddress { address, prefix } => {
                format!("Delete {address}/{prefix} from {}", self.interface)
            }
        }
    }
}

/// The smallest MTU of a link that has IPv4 addresses (RFC 791).
pub const MIN_MTU_V4: u32 = 68;
/// The smallest MTU of a link that has IPv6 addresses (RFC 8200); below
/// it the kernel takes IPv6 off the link.
pub const MIN_MTU_V6: u32 = 1280;
/// The largest MTU when the driver does not say.
pub const MAX_MTU: u32 = 65535;

fn bad(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

/// Whether the interface holds `address` (as its own, IFA_LOCAL).
fn holds(i: &Interface, address: IpAddr) -> bool {
    match address {
        IpAddr::V4(a) => i.ipv4.iter().any(|x| x.address == a),
        IpAddr::V6(a) => i.ipv6.iter().any(|(x, _)| *x == a),
    }
}

fn prefix_of(i: &Interface, address: IpAddr) -> Option<u8> {
    match address {
        IpAddr::V4(a) => i.ipv4.iter().find(|x| x.address == a).map(|x| x.prefix),
        IpAddr::V6(a) => i.ipv6.iter().find(|(x, _)| *x == a).map(|(_, p)| *p),
    }
}

/// The MTUs `i` takes: the driver's range (else 68..=65535), and at least
/// 68 with IPv4 addresses, 1280 with IPv6 ones.
pub fn mtu_range(i: &Interface) -> (u32, u32, &'static str) {
    let mut low = i.min_mtu.unwrap_or(MIN_MTU_V4);
    let high = i.max_mtu.unwrap_or(MAX_MTU);
    let mut why = if i.min_mtu.is_some() {
        "the smallest the link takes"
    } else {
        "the smallest for IPv4"
    };
    if !i.ipv4.is_empty() && low < MIN_MTU_V4 {
        low = MIN_MTU_V4;
        why = "the smallest for IPv4";
    }
    if !i.ipv6.is_empty() && low < MIN_MTU_V6 {
        low = MIN_MTU_V6;
        why = "the smallest for IPv6, and the interface has IPv6 addresses";
    }
    (low, high, why)
}

fn mtu(form: &Form, i: &Interface) -> Result<u32, FieldError> {
    let text = form.get("mtu");
    let (low, high, why) = mtu_range(i);
    let mtu: u32 = text.parse().map_err(|_| {
        bad(
            "mtu",
            if text.is_empty() {
                format!("Enter the MTU in bytes, from {low} to {high}.")
            } else {
                format!("{text:?} is not an MTU: a whole number of bytes, from {low} to {high}.")
            },
        )
    })?;
    if mtu < low {
        return Err(bad(
            "mtu",
            format!("{mtu} is below {low}, {why}: enter {low} to {high}."),
        ));
    }
    if mtu > high {
        return Err(bad(
            "mtu",
            format!(
                "{mtu} is above {high}, the largest {} takes: enter {low} to {high}.",
                i.name
            ),
        ));
    }
    if i.mtu == Some(mtu) {
        return Err(bad(
            "mtu",
            format!("The MTU of {} is already {mtu}: nothing to change.", i.name),
        ));
    }
    Ok(mtu)
}

/// `ADDRESS/PREFIX` in the `address` field, well-formed for an
/// interface's own address.
pub fn address(text: &str) -> Result<(IpAddr, u8), FieldError> {
    const EXAMPLE: &str = "e.g. 198.18.1.1/24 or 2001:db8:1::1/64";
    if text.is_empty() {
        return Err(bad(
            "address",
            format!("Enter the address with its prefix length, {EXAMPLE}."),
        ));
    }
    let Some((a, p)) = text.split_once('/') else {
        return Err(bad(
            "address",
            format!("{text:?} has no prefix length: add it after a slash, {EXAMPLE}."),
        ));
    };
    let address: IpAddr = a.trim().parse().map_err(|_| {
        bad(
            "address",
            format!("{:?} is not an IPv4 or IPv6 address ({EXAMPLE}).", a.trim()),
        )
    })?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = match p.trim().parse() {
        Ok(p) if (1..=max).contains(&p) => p,
        _ => {
            return Err(bad(
                "address",
                format!(
                    "{:?} is not a prefix length of an {} address: 1 to {max}.",
                    p.trim(),
                    if address.is_ipv4() { "IPv4" } else { "IPv6" }
                ),
            ));
        }
    };
    if address.is_unspecified() || address.is_multicast() || address == Ipv4Addr::BROADCAST {
        return Err(bad(
            "address",
            format!("{address} cannot be an interface's address."),
        ));
    }
    if let IpAddr::V4(v4) = address
        && prefix <= 30
    {
        let host = u32::from(v4) & (u32::MAX >> prefix);
        if host == 0 {
            return Err(bad(
                "address",
                format!("{address}/{prefix} is the network's own address, not a host's."),
            ));
        }
        if host == u32::MAX >> prefix {
            return Err(bad(
                "address",
                format!("{address}/{prefix} is the network's broadcast address, not a host's."),
            ));
        }
    }
    Ok((address, prefix))
}

/// Reads the form `what` against `interfaces` (read just now) into the one
/// change to make. `console` is the console's own address of the request's
/// connection (where the browser reached it), to tell the changes that may
/// cut that connection off.
pub fn plan(
    what: What,
    form: &Form,
    interfaces: &[Interface],
    console: Option<IpAddr>,
) -> Result<Plan, FieldError> {
    let name = form.get("interface");
    let Some(i) = interfaces.iter().find(|i| i.name == name) else {
        return Err(bad(
            "interface",
            if name.is_empty() {
                "Choose the interface.".to_owned()
            } else {
                format!("There is no interface {name:?} (any more).")
            },
        ));
    };
    let console = console.map(|c| c.to_canonical());
    let console_here = console.filter(|c| holds(i, *c));
    let edit = match what {
        What::Mtu => Edit::Mtu { mtu: mtu(form, i)? },
        What::AddAddress => {
            let (address, prefix) = address(form.get("address"))?;
            if let Some(other) = interfaces.iter().find(|o| holds(o, address)) {
                return Err(bad(
                    "address",
                    format!("{address} is already an address of {}.", other.name),
                ));
            }
            Edit::AddAddress { address, prefix }
        }
        What::DeleteAddress => {
            let (address, prefix) = address(form.get("address"))?;
            match prefix_of(i, address) {
                Some(p) if p == prefix => {}
                Some(p) => {
                    return Err(bad(
                        "address",
                        format!("{} has {address}/{p}, not /{prefix}.", i.name),
                    ));
                }
                None => {
                    return Err(bad(
                        "address",
                        format!("{} has no address {address}.", i.name),
                    ));
                }
            }
            Edit::DeleteAddress { address, prefix }
        }
    };
    let cuts_off = match (&edit, console_here) {
        (Edit::DeleteAddress { address, .. }, Some(c)) if *address == c => Some(format!(
            "Your browser reaches the console on {c}: deleting it from {} cuts this \
             connection off, and the console can then only be reached on another address.",
            i.name
        )),
        (Edit::Mtu { mtu }, Some(c)) => Some(format!(
            "{} holds {c}, the address your browser reaches the console on: an MTU of {mtu} \
             that the network does not carry cuts this connection off.",
            i.name
        )),
        _ => None,
    };
    Ok(Plan {
        interface: i.name.clone(),
        index: i.index,
        edit,
        cuts_off,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::Ipv4;

    fn form(body: &str) -> Form {
        Form::parse(body.as_bytes()).unwrap()
    }

    fn interfaces() -> Vec<Interface> {
        let iface = |index, name: &str| Interface {
            index,
            name: name.into(),
            mac: None,
            up: true,
            carrier: true,
            oper: None,
            mtu: Some(1500),
            min_mtu: Some(68),
            max_mtu: Some(9000),
            ipv4: vec![],
            ipv6: vec![],
        };
        let mut ext0 = iface(2, "ext0");
        ext0.ipv4 = vec![Ipv4 {
            address: "198.18.0.1".parse().unwrap(),
            prefix: 24,
            broadcast: None,
        }];
        ext0.ipv6 = vec![("2001:db8::1".parse().unwrap(), 64)];
        let mut int0 = iface(3, "int0");
        int0.ipv4 = vec![Ipv4 {
            address: "198.18.1.1".parse().unwrap(),
            prefix: 24,
            broadcast: None,
        }];
        int0.min_mtu = None;
        int0.max_mtu = None;
        let bare = iface(4, "dummy0");
        vec![ext0, int0, bare]
    }

    fn refused(what: What, body: &str) -> (&'static str, String) {
        let err = plan(what, &form(body), &interfaces(), None).unwrap_err();
        (err.field, err.message)
    }

    #[test]
    fn an_mtu_within_the_links_range_is_planned() {
        let p = plan(
            What::Mtu,
            &form("csrf=t&interface=int0&mtu=+9000"),
            &interfaces(),
            None,
        )
        .unwrap();
        assert_eq!(
            p,
            Plan {
                interface: "int0".into(),
                index: 3,
                edit: Edit::Mtu { mtu: 9000 },
                cuts_off: None
            }
        );
        assert_eq!(p.detail(), "int0 mtu 9000");
        assert_eq!(p.describe(), "Set the MTU of int0 to 9000");
        // No IPv6 address and no driver limit: 68 to 65535.
        let p = plan(
            What::Mtu,
            &form("interface=dummy0&mtu=68"),
            &interfaces(),
            None,
        )
        .unwrap();
        assert_eq!(p.edit, Edit::Mtu { mtu: 68 });
    }

    #[test]
    fn an_mtu_out_of_range_or_unchanged_is_refused_with_the_range() {
        for (body, message) in [
            (
                "interface=ext0&mtu=",
                "Enter the MTU in bytes, from 1280 to 9000.",
            ),
            (
                "interface=ext0&mtu=big",
                "\"big\" is not an MTU: a whole number of bytes, from 1280 to 9000.",
            ),
            (
                "interface=ext0&mtu=-1",
                "\"-1\" is not an MTU: a whole number of bytes, from 1280 to 9000.",
            ),
            (
                "interface=ext0&mtu=1279",
                "1279 is below 1280, the smallest for IPv6, and the interface has IPv6 addresses: enter 1280 to 9000.",
            ),
            (
                "interface=ext0&mtu=9001",
                "9001 is above 9000, the largest ext0 takes: enter 1280 to 9000.",
            ),
            (
                "interface=int0&mtu=67",
                "67 is below 68, the smallest for IPv4: enter 68 to 65535.",
            ),
            (
                "interface=int0&mtu=65536",
                "65536 is above 65535, the largest int0 takes: enter 68 to 65535.",
            ),
            (
                "interface=int0&mtu=1500",
                "The MTU of int0 is already 1500: nothing to change.",
            ),
        ] {
            assert_eq!(
                refused(What::Mtu, body),
                ("mtu", message.to_owned()),
                "{body}"
            );
        }
        assert_eq!(
            refused(What::Mtu, "interface=eth9&mtu=1400"),
            (
                "interface",
                "There is no interface \"eth9\" (any more).".to_owned()
            )
        );
        assert_eq!(
            refused(What::Mtu, "mtu=1400"),
            ("interface", "Choose the interface.".to_owned())
        );
    }

    #[test]
    fn addresses_are_added_once_and_deleted_only_when_there() {
        let p = plan(
            What::AddAddress,
            &form("interface=int0&address=2001%3Adb8%3A1%3A%3A1%2F64"),
            &interfaces(),
            None,
        )
        .unwrap();
        assert_eq!(
            p.edit,
            Edit::AddAddress {
                address: "2001:db8:1::1".parse().unwrap(),
                prefix: 64
            }
        );
        assert_eq!(p.detail(), "int0 2001:db8:1::1/64");
        assert_eq!(p.describe(), "Add 2001:db8:1::1/64 to int0");
        let p = plan(
            What::DeleteAddress,
            &form("interface=ext0&address=198.18.0.1/24"),
            &interfaces(),
            None,
        )
        .unwrap();
        assert_eq!(
            (p.edit, p.cuts_off),
            (
                Edit::DeleteAddress {
                    address: "198.18.0.1".parse().unwrap(),
                    prefix: 24
                },
                None
            )
        );
        for (what, body, message) in [
            (
                What::AddAddress,
                "interface=int0&address=198.18.0.1/24",
                "198.18.0.1 is already an address of ext0.",
            ),
            (
                What::AddAddress,
                "interface=int0&address=",
                "Enter the address with its prefix length, e.g. 198.18.1.1/24 or 2001:db8:1::1/64.",
            ),
            (
                What::AddAddress,
                "interface=int0&address=198.18.2.1",
                "\"198.18.2.1\" has no prefix length: add it after a slash, e.g. 198.18.1.1/24 or 2001:db8:1::1/64.",
            ),
            (
                What::AddAddress,
                "interface=int0&address=198.18.2/24",
                "\"198.18.2\" is not an IPv4 or IPv6 address (e.g. 198.18.1.1/24 or 2001:db8:1::1/64).",
            ),
            (
                What::AddAddress,
                "interface=int0&address=198.18.2.1/33",
                "\"33\" is not a prefix length of an IPv4 address: 1 to 32.",
            ),
            (
                What::AddAddress,
                "interface=int0&address=2001:db8::9/0",
                "\"0\" is not a prefix length of an IPv6 address: 1 to 128.",
            ),
            (
                What::AddAddress,
                "interface=int0&address=198.18.2.0/24",
                "198.18.2.0/24 is the network's own address, not a host's.",
            ),
            (
                What::AddAddress,
                "interface=int0&address=198.18.2.255/24",
                "198.18.2.255/24 is the network's broadcast address, not a host's.",
            ),
            (
                What::AddAddress,
                "interface=int0&address=224.0.0.1/24",
                "224.0.0.1 cannot be an interface's address.",
            ),
            (
                What::AddAddress,
                "interface=int0&address=::/64",
                ":: cannot be an interface's address.",
            ),
            (
                What::DeleteAddress,
                "interface=int0&address=198.18.0.1/24",
                "int0 has no address 198.18.0.1.",
            ),
            (
                What::DeleteAddress,
                "interface=ext0&address=198.18.0.1/16",
                "ext0 has 198.18.0.1/24, not /16.",
            ),
        ] {
            assert_eq!(
                refused(what, body),
                ("address", message.to_owned()),
                "{body}"
            );
        }
        // A /31 and a /32 have no network or broadcast address.
        assert_eq!(address("198.18.2.0/31").unwrap().1, 31);
        assert_eq!(address("198.18.2.255/32").unwrap().1, 32);
    }

    #[test]
    fn what_may_cut_the_console_off_is_marked_for_a_confirmation() {
        let console: IpAddr = "198.18.0.1".parse().unwrap();
        let ifs = interfaces();
        let p = |what, body: &str, console| plan(what, &form(body), &ifs, console).unwrap();
        let cut = p(
            What::DeleteAddress,
            "interface=ext0&address=198.18.0.1/24",
            Some(console),
        );
        assert_eq!(
            cut.cuts_off.as_deref(),
            Some(
                "Your browser reaches the console on 198.18.0.1: deleting it from ext0 cuts this \
                 connection off, and the console can then only be reached on another address."
            )
        );
        // Seen through an IPv6 socket as an IPv4-mapped address: the same.
        let mapped: IpAddr = "::ffff:198.18.0.1".parse().unwrap();
        assert!(
            p(What::Mtu, "interface=ext0&mtu=1400", Some(mapped))
                .cuts_off
                .unwrap()
                .starts_with("ext0 holds 198.18.0.1, the address your browser")
        );
        // Another address of that interface, another interface, adding:
        // the connection stays.
        for (what, body) in [
            (What::DeleteAddress, "interface=ext0&address=2001:db8::1/64"),
            (What::Mtu, "interface=int0&mtu=1400"),
            (What::AddAddress, "interface=ext0&address=198.18.0.2/24"),
            (What::DeleteAddress, "interface=int0&address=198.18.1.1/24"),
        ] {
            assert_eq!(p(what, body, Some(console)).cuts_off, None, "{body}");
        }
        // Unknown: nothing to compare with.
        assert_eq!(p(What::Mtu, "interface=ext0&mtu=1400", None).cuts_off, None);
    }

    #[test]
    fn paths_and_actions() {
        for what in [What::Mtu, What::AddAddress, What::DeleteAddress] {
            assert_eq!(What::from_path(what.path()), Some(what));
        }
        assert_eq!(What::from_path("/network/route/add"), None);
    }
}
