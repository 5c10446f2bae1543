//! The rig's links, addresses, routes and forwarding settings.
use anyhow::{Context as _, Result};

use super::{
    CLIENT_V4, CLIENT_V6, LB_EXT_IFACE, LB_EXT_V4, LB_EXT_V6, LB_INT_IFACE, LB_INT_V4, LB_INT_V6,
    ROUTER_V4, ROUTER_V6, Rig, TRANSIT_LB_V4, TRANSIT_LB_V6,
    links::{address, default_routes, veth},
};
use crate::netns::Netns;

/// The backends' prefixes (behind the LB, or behind the router).
const BACKENDS_NET_V4: &str = "198.18.1.0/24";
const BACKENDS_NET_V6: &str = "2001:db8:1::/64";

impl Rig {
    pub(super) fn wire(&self, router_mtu: Option<u32>) -> Result<()> {
        // No duplicate address detection, also for the link-local addresses
        // of the links to come: IPv6 works as soon as the rig is built
        // (otherwise neighbour discovery waits a second or two for it).
        let hosts = [&self.client, &self.lb, &self.switch]
            .into_iter()
            .chain(&self.lb2)
            .chain(&self.router)
            .chain(self.backends.iter().map(|b| &b.ns));
        for ns in hosts {
            ns.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
            ns.sysctl("net.ipv6.conf.default.accept_dad", "0")?;
        }
        // Client <-> LB (or the pair's client segment).
        match &self.lb2 {
            Some(lb2) => self.wire_pair_client_side(lb2)?,
            None => {
                veth(&self.client, "eth0", &self.lb, LB_EXT_IFACE)?;
                address(&self.client, "eth0", CLIENT_V4.into(), 24)?;
                address(&self.client, "eth0", CLIENT_V6.into(), 64)?;
                address(&self.lb, LB_EXT_IFACE, LB_EXT_V4.into(), 24)?;
                address(&self.lb, LB_EXT_IFACE, LB_EXT_V6.into(), 64)?;
                default_routes(&self.client, LB_EXT_V4, LB_EXT_V6)?;
            }
        }

        // The switch and its backends.
        self.switch
            .ip(["link", "add", "br0", "type", "bridge"])
            .context("creating the bridge")?;
        self.switch.ip(["link", "set", "br0", "up"])?;
        for backend in &self.backends {
            let port = format!("p-{}", backend.name);
            veth(&backend.ns, "eth0", &self.switch, &port)?;
            self.switch.ip(["link", "set", &port, "master", "br0"])?;
            address(&backend.ns, "eth0", backend.v4.into(), 24)?;
            address(&backend.ns, "eth0", backend.v6.into(), 64)?;
            default_routes(&backend.ns, LB_INT_V4, LB_INT_V6)?;
        }

        // The LB on the switch (both nodes of a pair), or the router
        // between them.
        match (&self.router, router_mtu, &self.lb2) {
            (_, _, Some(lb2)) => self.wire_pair_backend_side(lb2)?,
            (Some(router), Some(mtu), None) => self.wire_router(router, mtu)?,
            _ => {
                veth(&self.lb, LB_INT_IFACE, &self.switch, "p-lb")?;
                self.switch.ip(["link", "set", "p-lb", "master", "br0"])?;
                address(&self.lb, LB_INT_IFACE, LB_INT_V4.into(), 24)?;
                address(&self.lb, LB_INT_IFACE, LB_INT_V6.into(), 64)?;
            }
        }

        for lb in self.lbs() {
            forwarding(lb)?;
            // Replies from the VIP (DSR answers, NAT replies the program
            // hands to the kernel before it knows the client's MAC) arrive
            // with a source address the LB holds; let the kernel forward
            // them.
            lb.sysctl("net.ipv4.conf.all.accept_local", "1")?;
            lb.sysctl(&format!("net.ipv4.conf.{LB_INT_IFACE}.accept_local"), "1")?;
        }
        Ok(())
    }

    /// LB `int0` <-> router `r-lb` (the transit link), router `r-be` on the
    /// switch holding the backends' gateway address. The router's routes
    /// both ways carry `mtu` (locked, so that forwarding honours it in both
    /// families): a packet larger than that with DF set (every TCP segment,
    /// every IPv6 packet) is answered with an ICMP "fragmentation needed" or
    /// ICMPv6 "packet too big" from the router, as a smaller link further on
    /// would. Every device keeps an MTU of 1,500, so no frame is lost on a
    /// link without an error.
    fn wire_router(&self, router: &Netns, mtu: u32) -> Result<()> {
        veth(&self.lb, LB_INT_IFACE, router, "r-lb")?;
        address(&self.lb, LB_INT_IFACE, TRANSIT_LB_V4.into(), 24)?;
        address(&self.lb, LB_INT_IFACE, TRANSIT_LB_V6.into(), 64)?;
        address(router, "r-lb", ROUTER_V4.into(), 24)?;
        address(router, "r-lb", ROUTER_V6.into(), 64)?;
        veth(router, "r-be", &self.switch, "p-rt")?;
        self.switch.ip(["link", "set", "p-rt", "master", "br0"])?;
        address(router, "r-be", LB_INT_V4.into(), 24)?;
        address(router, "r-be", LB_INT_V6.into(), 64)?;

        let (rv4, rv6) = (ROUTER_V4.to_string(), ROUTER_V6.to_string());
        self.lb
            .ip(["route", "add", BACKENDS_NET_V4, "via", &rv4])
            .context("routing the backends through the router")?;
        self.lb
            .ip(["-6", "route", "add", BACKENDS_NET_V6, "via", &rv6])
            .context("routing the backends through the router")?;

        let mtu = mtu.to_string();
        let (lv4, lv6) = (TRANSIT_LB_V4.to_string(), TRANSIT_LB_V6.to_string());
        let routes: [&[&str]; 4] = [
            &["route", "add", "default", "via", &lv4],
            &["-6", "route", "add", "default", "via", &lv6],
            // The connected routes, replaced by the same with the MTU.
            &["route", "replace", BACKENDS_NET_V4, "dev", "r-be"],
            &[
                "-6",
                "route",
                "replace",
                BACKENDS_NET_V6,
                "dev",
                "r-be",
                "metric",
                "256",
            ],
        ];
        for route in routes {
            router
                .ip(route.iter().chain(&["mtu", "lock", mtu.as_str()]))
                .with_context(|| format!("router route {route:?} with mtu {mtu}"))?;
        }
        forwarding(router)
    }
}

fn forwarding(ns: &Netns) -> Result<()> {
    ns.sysctl("net.ipv4.ip_forward", "1")?;
    ns.sysctl("net.ipv6.conf.all.forwarding", "1")
}
