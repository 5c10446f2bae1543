//! Network > Interfaces: the node's interfaces as rtnetlink gives them
//! (`crate::network`), read-only.
use maud::{Markup, html};

use super::{Nav, app, unknown};
use crate::network::Interface;

fn state(i: &Interface) -> Markup {
    html! {
        @if i.up { span.badge.ok { "up" } } @else { span.badge.bad { "down" } }
        " "
        @if i.carrier { span.badge.ok { "carrier" } } @else { span.badge.warn { "no carrier" } }
    }
}

fn interface(i: &Interface) -> Markup {
    let id = format!("if-{}", i.index);
    html! {
        section.card.interface aria-labelledby=(id) {
            div.head {
                h2 id=(id) { code { (i.name) } }
                (state(i))
            }
            dl.facts {
                dt { "MAC" }
                dd.mono { @match &i.mac { Some(mac) => (mac), None => span.sub { "none" } } }
                dt { "State" }
                dd {
                    (if i.up { "up" } else { "down" }) ", "
                    (if i.carrier { "carrier" } else { "no carrier" })
                    div.sub {
                        "operational state "
                        @match &i.oper { Some(oper) => (oper), None => (unknown()) }
                    }
                }
                dt { "MTU" }
                dd { @match i.mtu { Some(mtu) => (mtu), None => (unknown()) } }
                dt { "IPv4" }
                dd {
                    @if i.ipv4.is_empty() { span.sub { "none" } }
                    @for a in &i.ipv4 {
                        div.address {
                            div.mono { (a.address) "/" (a.prefix) }
                            div.sub {
                                "mask " span.mono { (a.mask()) }
                                @if let Some(b) = a.broadcast {
                                    ", broadcast " span.mono { (b) }
                                }
                            }
                        }
                    }
                }
                dt { "IPv6" }
                dd {
                    @if i.ipv6.is_empty() { span.sub { "none" } }
                    @for (a, prefix) in &i.ipv6 {
                        div.address.mono { (a) "/" (prefix) }
                    }
                }
            }
        }
    }
}

/// The page: one card per interface, or unknown with why.
pub fn page(nav: &Nav, interfaces: &Result<Vec<Interface>, String>) -> String {
    app(
        nav,
        html! {
            @match interfaces {
                Ok(all) if all.is_empty() => {
                    section.card.wide { h2 { "Interfaces" } p.sub { "No interfaces." } }
                }
                Ok(all) => { @for i in all { (interface(i)) } }
                Err(why) => {
                    section.card.wide aria-labelledby="interfaces" {
                        h2 #interfaces { "Interfaces" }
                        p { "Interfaces: " (unknown()) }
                        p.error role="status" { (why) }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::Ipv4;
    use crate::pages::Section;

    fn nav() -> Nav<'static> {
        Nav {
            host: "node-1",
            version: "1.2.3",
            user: "admin",
            csrf: "t",
            section: Section::Network,
        }
    }

    #[test]
    fn an_interface_shows_its_addresses_and_an_error_shows_unknown() {
        let i = Interface {
            index: 2,
            name: "ext<0>".into(),
            mac: Some("02:00:00:00:00:01".into()),
            up: true,
            carrier: false,
            oper: None,
            mtu: Some(1500),
            ipv4: vec![Ipv4 {
                address: "198.18.0.1".parse().unwrap(),
                prefix: 24,
                broadcast: Some("198.18.0.255".parse().unwrap()),
            }],
            ipv6: vec![("2001:db8::1".parse().unwrap(), 64)],
        };
        let html = page(&nav(), &Ok(vec![i]));
        for want in [
            "<code>ext&lt;0&gt;</code>",
            r#"<dt>MAC</dt><dd class="mono">02:00:00:00:00:01</dd>"#,
            r#"<dt>State</dt><dd>up, no carrier<div class="sub">operational state <span class="unknown">unknown</span></div></dd>"#,
            "<dt>MTU</dt><dd>1500</dd>",
            r#"<div class="mono">198.18.0.1/24</div><div class="sub">mask <span class="mono">255.255.255.0</span>, broadcast <span class="mono">198.18.0.255</span></div>"#,
            r#"<div class="address mono">2001:db8::1/64</div>"#,
            r#"<a href="/network" aria-current="page">Network</a>"#,
        ] {
            assert!(html.contains(want), "{want} missing from {html}");
        }
        let html = page(&nav(), &Err("rtnetlink did not answer within 2 s".into()));
        assert!(html.contains(r#"Interfaces: <span class="unknown">unknown</span>"#));
        assert!(html.contains("rtnetlink did not answer within 2 s"));
        assert!(!html.contains("<dt>MTU</dt>"));
    }
}
