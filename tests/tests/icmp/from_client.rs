//! Errors from the client's side about NAT and DSR flows, to the backend.
use super::*;

/// Errors from the client's side about the service's packets (the client's
/// own, like port unreachable, or a router's there) reach the flow's
/// backend: for NAT as if the backend had sent the quoted packet, for DSR
/// unchanged but for the MACs.
#[test]
fn errors_from_the_client_side_reach_the_backend() {
    with_lb(|lb| {
        let mut sent = 0;
        for (v6, protocol) in COMBOS {
            for mode in [Mode::Nat, Mode::Dsr] {
                let spec = service(v6, protocol, mode);
                lb.configure(std::slice::from_ref(&spec))?;
                // NAT flows confirmed, DSR ones unconfirmed: errors about
                // either find their backend. (A port of its own for DSR:
                // the NAT flow stays confirmed, stale, in the table.)
                let first = first(&spec, if mode == Mode::Dsr { 40001 } else { 40000 });
                let backend = match mode {
                    Mode::Nat => lb.open(&first)?,
                    Mode::Dsr => lb.open_unconfirmed(&first)?,
                };
                let reply = service_reply(&first);
                let router = ip(if v6 { CLIENT_ROUTER6 } else { CLIENT_ROUTER4 });
                let mut cases = Vec::new();
                for how in [Quote::Whole, Quote::Cut] {
                    for (name, kind) in errors(v6) {
                        for (who, from, mac) in [
                            ("client", first.src.ip(), packets::CLIENT_MAC),
                            ("router", router, ROUTER_MAC),
                        ] {
                            let error = packets::icmp_message(
                                (mac, LB_EXT_MAC),
                                from,
                                spec.vip,
                                64,
                                &kind,
                                &quote(&reply, how),
                            );
                            let expected = match mode {
                                Mode::Nat => packets::icmp_message(
                                    (LB_INT_MAC, backend_mac(backend)),
                                    from,
                                    backend.ip(),
                                    63,
                                    &kind,
                                    &quote(&reply.clone().src(backend), how),
                                ),
                                Mode::Dsr => {
                                    let mut same = error.clone();
                                    same[..6].copy_from_slice(&backend_mac(backend));
                                    same[6..12].copy_from_slice(&LB_INT_MAC);
                                    same
                                }
                            };
                            cases.push(Case::new(
                                format!(
                                    "{mode:?} {protocol:?} v6={v6} {name} from the {who}, {how:?} quote"
                                ),
                                error,
                                Expect::Rewritten(Action::Redirect, expected),
                            ));
                        }
                    }
                }
                sent += cases.len() as u64;
                let whole = lb.check(lb.ext, &cases)?;
                assert_eq!(whole, whole_quotes(&cases), "quotes checked whole");
            }
        }
        assert_eq!(lb.dp.counter(Counter::ForwardedIcmp)?, sent);
        Ok(())
    });
}
