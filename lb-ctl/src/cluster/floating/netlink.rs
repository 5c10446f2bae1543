//! The edge of the floating IPs: interface addresses through rtnetlink and
//! announcement frames through a packet socket, in the daemon's network
//! namespace. No decisions here (see the parent module).
use std::{
    collections::BTreeSet,
    net::IpAddr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use anyhow::{Context as _, Result, bail};
use futures_util::TryStreamExt as _;
use rtnetlink::{
    Handle,
    packet_route::{
        address::{AddressAttribute, AddressFlags, CacheInfo},
        link::LinkAttribute,
    },
};

use super::{AddrOp, Held, announcement, plan};
use crate::cluster::{Role, config::FloatingIp};

/// The failover group on this node's interfaces.
pub struct FloatingIps {
    handle: Handle,
    group: Vec<Held>,
    /// Per group address: the interface's MAC, for announcements.
    macs: Vec<[u8; 6]>,
    socket: OwnedFd,
}

impl FloatingIps {
    /// Resolves the configured group (interface names to indexes and MACs)
    /// and opens the sockets. Needs a tokio runtime.
    pub async fn open(config: &[FloatingIp]) -> Result<Self> {
        let (connection, handle, _) =
            rtnetlink::new_connection().context("opening an rtnetlink socket")?;
        tokio::spawn(connection);
        let mut group = Vec::new();
        let mut macs = Vec::new();
        for fip in config {
            let (address, prefix) = fip
                .parse()
                .map_err(|e| anyhow::anyhow!("floating IP {}: {e}", fip.address))?;
            let (ifindex, mac) = link(&handle, &fip.interface)
                .await
                .with_context(|| format!("floating IP {address}: interface {}", fip.interface))?;
            group.push(Held {
                ifindex,
                address,
                prefix,
            });
            macs.push(mac);
        }
        // SAFETY: plain socket(2); the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("opening a packet socket");
        }
        // SAFETY: a descriptor we just opened and own alone.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(FloatingIps {
            handle,
            group,
            macs,
            socket,
        })
    }

    pub fn group(&self) -> &[Held] {
        &self.group
    }

    /// The group's addresses found on their interfaces (any prefix).
    pub async fn present(&self) -> Result<BTreeSet<Held>> {
        let mut present = BTreeSet::new();
        let ifindexes: BTreeSet<u32> = self.group.iter().map(|h| h.ifindex).collect();
        for ifindex in ifindexes {
            let mut addrs = self
                .handle
                .address()
                .get()
                .set_link_index_filter(ifindex)
                .execute();
            while let Some(msg) = addrs.try_next().await.context("reading addresses")? {
                let address = msg.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(addr) => Some(*addr),
                    _ => None,
                });
                if let Some(address) = address
                    && msg.header.index == ifindex
                    && self.group.iter().any(|h| h.address == address)
                {
                    present.insert(Held {
                        ifindex,
                        address,
                        prefix: msg.header.prefix_len,
                    });
                }
            }
        }
        Ok(present)
    }

    /// Adds or removes the group's addresses for `role`; returns what it did.
    pub async fn converge(&self, role: Role) -> Result<Vec<AddrOp>> {
        let ops = plan(role, &self.group, &self.present().await?);
        for op in &ops {
            self.apply(*op).await?;
        }
        Ok(ops)
    }

    async fn apply(&self, op: AddrOp) -> Result<()> {
        match op {
            AddrOp::Add(held) => {
                let mut request =
                    self.handle
                        .address()
                        .add(held.ifindex, held.address, held.prefix);
                // No duplicate address detection: an IPv6 floating IP must
                // answer at once, not after a second of DAD (the peer that
                // held it has just given it up).
                request
                    .message_mut()
                    .attributes
                    .push(AddressAttribute::Flags(AddressFlags::Nodad));
                if held.address.is_ipv6() {
                    // Deprecated (preferred lifetime 0, valid forever): the
                    // node never picks the floating IP as the source of its
                    // own packets (a time exceeded must come from the
                    // node's address, never from the VIP), and it still
                    // answers for it.
                    let mut lifetimes = CacheInfo::default();
                    lifetimes.ifa_preferred = 0;
                    lifetimes.ifa_valid = u32::MAX;
                    request
                        .message_mut()
                        .attributes
                        .push(AddressAttribute::CacheInfo(lifetimes));
                }
                request
                    .execute()
                    .await
                    .with_context(|| format!("adding {}/{}", held.address, held.prefix))
            }
            AddrOp::Del(held) => {
                let mut addrs = self
                    .handle
                    .address()
                    .get()
                    .set_link_index_filter(held.ifindex)
                    .set_address_filter(held.address)
                    .execute();
                while let Some(msg) = addrs.try_next().await.context("reading addresses")? {
                    if msg.header.prefix_len == held.prefix && msg.header.index == held.ifindex {
                        self.handle
                            .address()
                            .del(msg)
                            .execute()
                            .await
                            .with_context(|| {
                                format!("removing {}/{}", held.address, held.prefix)
                            })?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Sends one announcement (gratuitous ARP or unsolicited NA) for every
    /// address of the group; returns how many went out. A failure on one
    /// interface does not stop the others; the first error is returned after.
    pub fn announce(&self) -> Result<usize> {
        let mut sent = 0;
        let mut first_error = None;
        for (held, mac) in self.group.iter().zip(&self.macs) {
            let frame = announcement(*mac, held.address);
            match send(&self.socket, held.ifindex, &frame) {
                Ok(()) => sent += 1,
                Err(err) => {
                    first_error.get_or_insert(err.context(format!(
                        "announcing {} on ifindex {}",
                        held.address, held.ifindex
                    )));
                }
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(sent),
        }
    }
}

/// The index and MAC of an interface.
async fn link(handle: &Handle, name: &str) -> Result<(u32, [u8; 6])> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    let Some(msg) = links.try_next().await.context("no such interface")? else {
        bail!("no such interface");
    };
    let mac = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(mac) => <[u8; 6]>::try_from(mac.as_slice()).ok(),
            _ => None,
        })
        .context("the interface has no Ethernet address")?;
    Ok((msg.header.index, mac))
}

/// Sends a whole Ethernet frame out of `ifindex`.
fn send(socket: &OwnedFd, ifindex: u32, frame: &[u8]) -> Result<()> {
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = ifindex as i32;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&frame[..6]);
    // SAFETY: the buffer and address are valid for the lengths given.
    let sent = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&raw const addr).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error()).context("sendto");
    }
    Ok(())
}

/// The interface addresses, for tests and status: `address/prefix`.
pub fn describe(held: &Held) -> String {
    match held.address {
        IpAddr::V4(a) => format!("{a}/{}", held.prefix),
        IpAddr::V6(a) => format!("{a}/{}", held.prefix),
    }
}
