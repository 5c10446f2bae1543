//! The Network page's forms: refusals by their field, nothing changed.
use super::*;

/// The network forms, each with a body the console refuses before it asks
/// the kernel, and the field and reason. They run in the test process's
/// own namespace: only refusals here (the changes that go through are
/// made in `tests/network.rs`, in a namespace of its own).
fn refused_network_forms() -> Vec<(&'static str, &'static str, &'static str, &'static str)> {
    vec![
        (
            "/network/mtu",
            "interface=lo&mtu=big",
            "mtu",
            "&quot;big&quot; is not an MTU: a whole number of bytes, from 1280 to 65535.",
        ),
        (
            "/network/mtu",
            "interface=lo&mtu=67",
            "mtu",
            "67 is below 1280, the smallest for IPv6, and the interface has IPv6 addresses: enter 1280 to 65535.",
        ),
        (
            "/network/address/add",
            "interface=lo&address=198.18.300.1%2F24",
            "address",
            "&quot;198.18.300.1&quot; is not an IPv4 or IPv6 address",
        ),
        (
            "/network/address/add",
            "interface=lo&address=127.0.0.1%2F8",
            "address",
            "127.0.0.1 is already an address of lo.",
        ),
        (
            "/network/address/delete",
            "interface=lo&address=198.18.9.9%2F24",
            "address",
            "lo has no address 198.18.9.9.",
        ),
    ]
}

#[tokio::test]
async fn network_forms_refuse_bad_input_by_its_field_and_change_nothing() {
    let c = console();
    // A standby: the network forms are still offered (per-node settings).
    let fake = Fake::start(&c, STANDBY);
    let (cookie, csrf) = session(&c).await;
    let page = c.get("/network", Some(&cookie)).await;
    assert_has(
        &page,
        &[
            r#"<form class="inline" method="post" action="/network/mtu">"#,
            r#"<form class="add" method="post" action="/network/address/add">"#,
            r#"<form class="inline" method="post" action="/network/address/delete">"#,
        ],
    );
    let before = crate::network::read().await.unwrap();
    // The loopback here has ::1 unless IPv6 is off: the messages name it.
    let lo = before.iter().find(|i| i.name == "lo").unwrap();
    assert!(!lo.ipv6.is_empty(), "this test expects ::1 on the loopback");
    for (path, form, field, message) in refused_network_forms() {
        let reply = c
            .send(
                Method::POST,
                path,
                Some(&cookie),
                &format!("csrf={csrf}&{form}"),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path} {form}");
        if path == "/network/address/delete" {
            // No such address: no delete button to show it by.
            assert_has(&reply, &[&format!("Nothing was changed: {message}")]);
            continue;
        }
        assert_has(
            &reply,
            &[
                &format!(r#"id="{field}-error">{message}"#),
                r#"aria-invalid="true""#,
            ],
        );
        // What was typed is kept in the field.
        let typed = form.split('&').nth(1).unwrap().split('=').nth(1).unwrap();
        let typed = typed.replace("%2F", "/");
        assert!(
            reply
                .body
                .contains(&format!(r#"aria-invalid="true" value="{typed}">"#)),
            "{typed} not kept: {}",
            reply.body
        );
    }
    // Without the token, and without a session: refused before anything.
    for (path, form, _, _) in refused_network_forms() {
        let reply = c.send(Method::POST, path, Some(&cookie), form).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
        let reply = c
            .send(Method::POST, path, None, &format!("csrf={csrf}&{form}"))
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    // An interface that is not there, a form that is not one.
    let reply = c
        .send(
            Method::POST,
            "/network/mtu",
            Some(&cookie),
            &format!("csrf={csrf}&interface=nosuch9&mtu=1400"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_has(
        &reply,
        &["Nothing was changed: There is no interface &quot;nosuch9&quot; (any more)."],
    );
    let reply = c
        .send(
            Method::POST,
            "/network/address/replace",
            Some(&cookie),
            &format!("csrf={csrf}&interface=lo"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(crate::network::read().await.unwrap(), before);
    // Never the daemon.
    assert_eq!(fake.asked(), []);
    let audit: Vec<(String, String, String)> = c
        .audit()
        .into_iter()
        .filter(|e| e.action != "login")
        .map(|e| (e.action, e.detail, e.outcome))
        .collect();
    assert_eq!(audit.len(), 6 + 5, "{audit:#?}");
    assert_eq!(
        audit[0],
        (
            "interface mtu".to_owned(),
            r#"interface="lo" mtu="big""#.to_owned(),
            "refused: mtu: \"big\" is not an MTU: a whole number of bytes, from 1280 to 65535."
                .to_owned()
        )
    );
    assert_eq!(
        audit[4],
        (
            "address delete".to_owned(),
            r#"interface="lo" address="198.18.9.9/24""#.to_owned(),
            "refused: address: lo has no address 198.18.9.9.".to_owned()
        )
    );
    assert_eq!(
        audit[5].2, "refused: missing or wrong CSRF token",
        "{audit:#?}"
    );
}
