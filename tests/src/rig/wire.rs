//! The rig's links, addresses, routes and forwarding settings.
use anyhow::{Context as _, Result};

use super::{
    CLIENT_V4, CLIENT_V6, GATEWAY_V4, GATEWAY_V6, ROUTER_V4, ROUTER_V6, Rig,
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
        let hosts = [&self.client, &self.switch]
            .into_iter()
            .chain(self.nodes.iter().map(|n| &n.ns))
            .chain(&self.router)
            .chain(self.backends.iter().map(|b| &b.ns));
        for ns in hosts {
            ns.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
            ns.sysctl("net.ipv6.conf.default.accept_dad", "0")?;
        }
        // Client <-> LB (or the pair's client segment).
        let lb = self.lb();
        if self.is_pair() {
            self.wire_pair_client_side()?;
        } else {
            veth(&self.client, "eth0", &lb.ns, lb.ext_iface)?;
            address(&self.client, "eth0", CLIENT_V4.into(), 24)?;
            address(&self.client, "eth0", CLIENT_V6.into(), 64)?;
            address(&lb.ns, lb.ext_iface, lb.ext_v4.into(), 24)?;
            address(&lb.ns, lb.ext_iface, lb.ext_v6.into(), 64)?;
            default_routes(&self.client, lb.ext_v4, lb.ext_v6)?;
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
            default_routes(&backend.ns, GATEWAY_V4, GATEWAY_V6)?;
        }

        // The LB on the switch (both nodes of a pair), or the router
        // between them.
        match (&self.router, router_mtu, self.is_pair()) {
            (_, _, true) => self.wire_pair_backend_side()?,
            (Some(router), Some(mtu), false) => self.wire_router(router, mtu)?,
            _ => {
                let port = lb.int_port();
                veth(&lb.ns, lb.int_iface, &self.switch, &port)?;
                self.switch.ip(["link", "set", &port, "master", "br0"])?;
                address(&lb.ns, lb.int_iface, lb.int_v4.into(), 24)?;
                address(&lb.ns, lb.int_iface, lb.int_v6.into(), 64)?;
            }
        }

        for node in &self.nodes {
            let lb = &node.ns;
            forwarding(lb)?;
            // A node's own IPv6 addresses stay when an interface is set
            // down and up (the demo's link-monitor failover does that), as a
            // host's network configuration would put them back; the
            // floating IPs are the daemon's to restore.
            lb.sysctl("net.ipv6.conf.all.keep_addr_on_down", "1")?;
            // Replies from the VIP (DSR answers, NAT replies the program
            // hands to the kernel before it knows the client's MAC) arrive
            // with a source address the LB holds; let the kernel forward
            // them.
            lb.sysctl("net.ipv4.conf.all.accept_local", "1")?;
            lb.sysctl(
                &format!("net.ipv4.conf.{}.accept_local", node.int_iface),
                "1",
            )?;
        }
        Ok(())
    }

    /// LB `int0` (its transit address) <-> router `r-lb` (the transit link), router `r-be` on the
    /// switch holding the backends' gateway address. The router's routes
    /// both ways carry `mtu` (locked, so that forwarding honours it in both
    /// families): a packet larger than that with DF set (every TCP segment,
    /// every IPv6 packet) is answered with an ICMP "fragmentation needed" or
    /// ICMPv6 "packet too big" from the router, as a smaller link further on
    /// would. Every device keeps an MTU of 1,500, so no frame is lost on a
    /// link without an error.
    fn wire_router(&self, router: &Netns, mtu: u32) -> Result<()> {
        let lb = self.lb();
        veth(&lb.ns, lb.int_iface, router, "r-lb")?;
        address(&lb.ns, lb.int_iface, lb.int_v4.into(), 24)?;
        address(&lb.ns, lb.int_iface, lb.int_v6.into(), 64)?;
        address(router, "r-lb", ROUTER_V4.into(), 24)?;
        address(router, "r-lb", ROUTER_V6.into(), 64)?;
        veth(router, "r-be", &self.switch, "p-rt")?;
        self.switch.ip(["link", "set", "p-rt", "master", "br0"])?;
        address(router, "r-be", GATEWAY_V4.into(), 24)?;
        address(router, "r-be", GATEWAY_V6.into(), 64)?;

        let (rv4, rv6) = (ROUTER_V4.to_string(), ROUTER_V6.to_string());
        lb.ns
            .ip(["route", "add", BACKENDS_NET_V4, "via", &rv4])
            .context("routing the backends through the router")?;
        lb.ns
            .ip(["-6", "route", "add", BACKENDS_NET_V6, "via", &rv6])
            .context("routing the backends through the router")?;

        let mtu = mtu.to_string();
        let (lv4, lv6) = (lb.int_v4.to_string(), lb.int_v6.to_string());
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
