//! Network > Interfaces: the node's interfaces as rtnetlink gives them
//! (`crate::network`), with the forms that set an interface's MTU and add
//! or delete its addresses. A refused form is shown again with the reason
//! next to its field and what was typed; a change that may cut the
//! browser off is confirmed first ([`confirm`]).
use maud::{Markup, html};

use super::lb::{Failed, invalid, reason, typed};
use super::{Nav, app, unknown};
use crate::forms::Form;
use crate::network::Interface;
use crate::network::edit::{Plan, What, mtu_range};

/// Which form of the page a [`Failed`] is about.
pub fn key(what: What, interface: &str, address: &str) -> String {
    match what {
        What::Mtu => format!("mtu {interface}"),
        What::AddAddress => format!("add-address {interface}"),
        What::DeleteAddress => format!("delete-address {interface} {address}"),
    }
}

/// The keys of every form the page shows for `all`.
fn keys(all: &[Interface]) -> Vec<String> {
    let mut keys = Vec::new();
    for i in all {
        keys.push(key(What::Mtu, &i.name, ""));
        keys.push(key(What::AddAddress, &i.name, ""));
        for a in &i.ipv4 {
            keys.push(key(
                What::DeleteAddress,
                &i.name,
                &format!("{}/{}", a.address, a.prefix),
            ));
        }
        for (a, p) in &i.ipv6 {
            keys.push(key(What::DeleteAddress, &i.name, &format!("{a}/{p}")));
        }
    }
    keys
}

fn state(i: &Interface) -> Markup {
    html! {
        @if i.up { span.badge.ok { "up" } } @else { span.badge.bad { "down" } }
        " "
        @if i.carrier { span.badge.ok { "carrier" } } @else { span.badge.warn { "no carrier" } }
    }
}

fn hidden(nav: &Nav, i: &Interface) -> Markup {
    html! {
        input type="hidden" name="csrf" value=(nav.csrf);
        input type="hidden" name="interface" value=(i.name);
    }
}

/// An address with its delete button.
fn address(nav: &Nav, i: &Interface, failed: Option<&Failed>, text: &str, sub: Markup) -> Markup {
    let key = key(What::DeleteAddress, &i.name, text);
    html! {
        div.address {
            div.row {
                span.mono { (text) }
                form.inline method="post" action=(What::DeleteAddress.path()) {
                    (hidden(nav, i))
                    input type="hidden" name="address" value=(text);
                    button.quiet.danger.small type="submit" aria-label=(format!("Delete {text} from {}", i.name)) { "Delete" }
                }
            }
            (sub)
            (reason(failed, &key, "address"))
        }
    }
}

fn mtu_form(nav: &Nav, i: &Interface, failed: Option<&Failed>) -> Markup {
    let key = key(What::Mtu, &i.name, "");
    let (low, high, _) = mtu_range(i);
    let id = format!("mtu-{}", i.index);
    let current = i.mtu.map(|m| m.to_string()).unwrap_or_default();
    html! {
        form.inline method="post" action=(What::Mtu.path()) {
            (hidden(nav, i))
            label.sr for=(id) { "MTU of " (i.name) }
            input.narrow id=(id) name="mtu" inputmode="numeric"
                aria-invalid=[invalid(failed, &key, "mtu")]
                value=(typed(failed, &key, "mtu", &current));
            button.quiet type="submit" { "Set MTU" }
        }
        div.sub { (low) " to " (high) }
        (reason(failed, &key, "mtu"))
    }
}

fn add_form(nav: &Nav, i: &Interface, failed: Option<&Failed>) -> Markup {
    let key = key(What::AddAddress, &i.name, "");
    let id = format!("add-address-{}", i.index);
    html! {
        form.add method="post" action=(What::AddAddress.path()) {
            (hidden(nav, i))
            div.field.grow {
                label for=(id) { "New address (address/prefix)" }
                input id=(id) name="address" placeholder="198.18.1.1/24 or 2001:db8:1::1/64"
                    aria-invalid=[invalid(failed, &key, "address")]
                    value=(typed(failed, &key, "address", ""));
            }
            button type="submit" { "Add address" }
        }
        (reason(failed, &key, "address"))
    }
}

fn interface(nav: &Nav, i: &Interface, failed: Option<&Failed>) -> Markup {
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
                dd {
                    div { @match i.mtu { Some(mtu) => (mtu), None => (unknown()) } }
                    (mtu_form(nav, i, failed))
                }
                dt { "IPv4" }
                dd {
                    @if i.ipv4.is_empty() { span.sub { "none" } }
                    @for a in &i.ipv4 {
                        (address(nav, i, failed, &format!("{}/{}", a.address, a.prefix), html! {
                            div.sub {
                                "mask " span.mono { (a.mask()) }
                                @if let Some(b) = a.broadcast {
                                    ", broadcast " span.mono { (b) }
                                }
                            }
                        }))
                    }
                }
                dt { "IPv6" }
                dd {
                    @if i.ipv6.is_empty() { span.sub { "none" } }
                    @for (a, prefix) in &i.ipv6 {
                        (address(nav, i, failed, &format!("{a}/{prefix}"), html! {}))
                    }
                }
            }
            (add_form(nav, i, failed))
        }
    }
}

/// The page: one card per interface, or unknown with why. `failed`: a
/// refused form; `changed`: the interface a change was just made to.
pub fn page(
    nav: &Nav,
    interfaces: &Result<Vec<Interface>, String>,
    failed: Option<&Failed>,
    changed: Option<&str>,
) -> String {
    let changed = match interfaces {
        Ok(all) => changed.filter(|c| all.iter().any(|i| i.name == *c)),
        Err(_) => None,
    };
    // A refusal no form of the page shows (the interface or the address
    // is gone, or the interfaces could not be read): at the top.
    let orphan = match interfaces {
        Ok(all) => failed.filter(|f| f.field == "interface" || !keys(all).contains(&f.form)),
        Err(_) => failed,
    };
    app(
        nav,
        html! {
            section.card.wide.note role="note" {
                p {
                    "These settings are this node's own: they are made at once in its kernel, "
                    "not sent to the other node, and not kept in the load balancer's configuration."
                }
            }
            @if let Some(name) = changed {
                p.notice.wide role="status" {
                    "The change to " code { (name) } " is made: below is what the kernel reports now."
                }
            }
            @if let Some(f) = orphan {
                p.error.wide role="alert" { "Nothing was changed: " (f.message) }
            }
            @match interfaces {
                Ok(all) if all.is_empty() => {
                    section.card.wide { h2 { "Interfaces" } p.sub { "No interfaces." } }
                }
                Ok(all) => { @for i in all { (interface(nav, i, failed)) } }
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

/// The confirmation of a change that may cut the browser's connection
/// off (`why`): the same form again, with `confirm=yes`.
pub fn confirm(nav: &Nav, plan: &Plan, form: &Form, why: &str) -> String {
    let what = plan.what();
    let field = what.field();
    app(
        nav,
        html! {
            section.card aria-labelledby="confirm" {
                h2 #confirm { (plan.describe()) "?" }
                p.error { (why) }
                p { "The change is made at once in this node's kernel. Make it only if you can reach the console another way if it goes wrong." }
                form.inline method="post" action=(what.path()) {
                    input type="hidden" name="csrf" value=(nav.csrf);
                    input type="hidden" name="interface" value=(plan.interface);
                    input type="hidden" name=(field) value=(form.get(field));
                    input type="hidden" name="confirm" value="yes";
                    button.danger-fill type="submit" { (plan.describe()) }
                    " " a href="/network" { "Cancel" }
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
            min_mtu: Some(68),
            max_mtu: Some(9000),
            ipv4: vec![Ipv4 {
                address: "198.18.0.1".parse().unwrap(),
                prefix: 24,
                broadcast: Some("198.18.0.255".parse().unwrap()),
            }],
            ipv6: vec![("2001:db8::1".parse().unwrap(), 64)],
        };
        let html = page(&nav(), &Ok(vec![i]), None, None);
        for want in [
            "<code>ext&lt;0&gt;</code>",
            r#"<dt>MAC</dt><dd class="mono">02:00:00:00:00:01</dd>"#,
            r#"<dt>State</dt><dd>up, no carrier<div class="sub">operational state <span class="unknown">unknown</span></div></dd>"#,
            "<dt>MTU</dt><dd><div>1500</div>",
            r#"<input class="narrow" id="mtu-2" name="mtu" inputmode="numeric" value="1500">"#,
            r#"<div class="sub">1280 to 9000</div>"#,
            r#"<span class="mono">198.18.0.1/24</span>"#,
            r#"<div class="sub">mask <span class="mono">255.255.255.0</span>, broadcast <span class="mono">198.18.0.255</span></div>"#,
            r#"<input type="hidden" name="address" value="198.18.0.1/24">"#,
            r#"<span class="mono">2001:db8::1/64</span>"#,
            r#"<input type="hidden" name="interface" value="ext&lt;0&gt;">"#,
            r#"<form class="add" method="post" action="/network/address/add">"#,
            r#"<a href="/network" aria-current="page">Network</a>"#,
        ] {
            assert!(html.contains(want), "{want} missing from {html}");
        }
        let html = page(
            &nav(),
            &Err("rtnetlink did not answer within 2 s".into()),
            None,
            None,
        );
        assert!(html.contains(r#"Interfaces: <span class="unknown">unknown</span>"#));
        assert!(html.contains("rtnetlink did not answer within 2 s"));
        assert!(!html.contains("<dt>MTU</dt>"));
    }

    fn ext0() -> Interface {
        Interface {
            index: 2,
            name: "ext0".into(),
            mac: None,
            up: true,
            carrier: true,
            oper: None,
            mtu: Some(1500),
            min_mtu: None,
            max_mtu: None,
            ipv4: vec![Ipv4 {
                address: "198.18.0.1".parse().unwrap(),
                prefix: 24,
                broadcast: None,
            }],
            ipv6: vec![],
        }
    }

    #[test]
    fn a_refused_form_shows_why_by_its_field_with_what_was_typed() {
        let failed = Failed {
            form: key(What::Mtu, "ext0", ""),
            field: "mtu".into(),
            message: "\"big\" is not an MTU".into(),
            typed: vec![
                ("interface".into(), "ext0".into()),
                ("mtu".into(), "big".into()),
            ],
        };
        let html = page(&nav(), &Ok(vec![ext0()]), Some(&failed), None);
        for want in [
            r#"name="mtu" inputmode="numeric" aria-invalid="true" value="big">"#,
            r#"<p class="error field-error" role="alert" id="mtu-error">&quot;big&quot; is not an MTU</p>"#,
        ] {
            assert!(html.contains(want), "{want} missing from {html}");
        }
        assert!(!html.contains("Nothing was changed"));
        // The interface went away: the reason at the top.
        let gone = Failed {
            form: key(What::Mtu, "eth9", ""),
            field: "interface".into(),
            message: "There is no interface \"eth9\" (any more).".into(),
            typed: vec![],
        };
        let html = page(&nav(), &Ok(vec![ext0()]), Some(&gone), Some("nope"));
        assert!(html.contains(
            r#"<p class="error wide" role="alert">Nothing was changed: There is no interface &quot;eth9&quot; (any more).</p>"#
        ));
        // `changed` names an interface only if there is one.
        assert!(!html.contains("The change to"));
        let html = page(&nav(), &Ok(vec![ext0()]), None, Some("ext0"));
        assert!(html.contains("The change to <code>ext0</code> is made"));
    }

    #[test]
    fn a_confirmation_posts_the_same_change_confirmed() {
        let form = Form::parse(b"csrf=t&interface=ext0&address=198.18.0.1%2F24").unwrap();
        let plan = crate::network::edit::plan(
            What::DeleteAddress,
            &form,
            &[ext0()],
            Some("198.18.0.1".parse().unwrap()),
        )
        .unwrap();
        let html = confirm(&nav(), &plan, &form, plan.cuts_off.as_deref().unwrap());
        for want in [
            "<h2 id=\"confirm\">Delete 198.18.0.1/24 from ext0?</h2>",
            "Your browser reaches the console on 198.18.0.1",
            r#"<form class="inline" method="post" action="/network/address/delete"><input type="hidden" name="csrf" value="t"><input type="hidden" name="interface" value="ext0"><input type="hidden" name="address" value="198.18.0.1/24"><input type="hidden" name="confirm" value="yes">"#,
            r#"<a href="/network">Cancel</a>"#,
        ] {
            assert!(html.contains(want), "{want} missing from {html}");
        }
    }
}
