use super::*;

fn backend(addr: &str, weight: u32) -> BackendSpec {
    BackendSpec {
        addr: addr.parse().unwrap(),
        weight,
        state: BackendState::Enabled,
    }
}

fn service(vip: &str, port: u16, backends: Vec<BackendSpec>) -> ServiceSpec {
    ServiceSpec {
        vip: vip.parse().unwrap(),
        port,
        protocol: Protocol::Tcp,
        mode: Mode::Nat,
        backends,
        sorry: None,
    }
}

fn three() -> ServiceSpec {
    service(
        "198.18.0.100",
        80,
        vec![
            backend("198.18.1.11:80", 1),
            backend("198.18.1.12:80", 1),
            backend("198.18.1.13:8080", 2),
        ],
    )
}

#[test]
fn first_plan_writes_backends_tables_and_services() {
    let (next, ops) = Balancer::new().plan(&[three()]).unwrap();
    assert_eq!(ops.put_backends.len(), 3);
    assert_eq!(ops.put_tables.len(), 1);
    assert_eq!(ops.put_services.len(), 1);
    assert_eq!(ops.fresh_backend_ids, vec![0, 1, 2]);
    assert_eq!(ops.fresh_service_ids, vec![0]);
    let table = &next.tables().maglev[&0];
    assert_eq!(table.len(), lb_common::MAGLEV_TABLE_SIZE as usize);
    // Weight 2 gets about half the slots.
    let heavy = table.iter().filter(|&&id| id == 2).count() as f64 / table.len() as f64;
    assert!((0.48..0.52).contains(&heavy), "{heavy}");
    let b = next.tables().backends[&2];
    assert_eq!(b.port, 8080u16.to_be_bytes());
    assert_eq!(&b.addr[..4], &[198, 18, 1, 13]);
    assert_eq!(b.flags, backend_flags::LIVE);
}

#[test]
fn same_configuration_in_any_order_gives_identical_tables() {
    let mut a = three();
    let b = service(
        "2001:db8::100",
        443,
        vec![backend("[2001:db8:1::11]:443", 3)],
    );
    let (one, _) = Balancer::new().plan(&[a.clone(), b.clone()]).unwrap();
    a.backends.reverse();
    let (two, _) = Balancer::new().plan(&[b, a]).unwrap();
    assert_eq!(one.tables(), two.tables());
}

#[test]
fn unchanged_configuration_plans_nothing() {
    let (next, _) = Balancer::new().plan(&[three()]).unwrap();
    let (_, ops) = next.plan(&[three()]).unwrap();
    assert!(ops.is_empty(), "{ops:?}");
}

#[test]
fn draining_keeps_the_backend_live_but_out_of_the_table() {
    let (next, _) = Balancer::new().plan(&[three()]).unwrap();
    let mut spec = three();
    spec.backends[0].state = BackendState::Drained;
    let (after, ops) = next.plan(&[spec]).unwrap();
    assert!(ops.put_backends.is_empty(), "{ops:?}");
    assert_eq!(ops.put_tables.len(), 1);
    assert!(!after.tables().maglev[&0].contains(&0));
    assert_eq!(after.tables().backends[&0].flags, backend_flags::LIVE);
}

#[test]
fn disabling_clears_live_so_flows_move() {
    let (next, _) = Balancer::new().plan(&[three()]).unwrap();
    let mut spec = three();
    spec.backends[1].state = BackendState::Disabled;
    let (after, ops) = next.plan(&[spec]).unwrap();
    assert_eq!(
        ops.put_backends,
        vec![(
            1,
            Backend {
                flags: 0,
                ..after.tables().backends[&1]
            }
        )]
    );
    assert!(!after.tables().maglev[&0].contains(&1));
}

#[test]
fn removed_backend_is_retired_and_its_id_reused_with_a_new_generation() {
    let (next, _) = Balancer::new().plan(&[three()]).unwrap();
    let mut spec = three();
    spec.backends.remove(0);
    let (after, ops) = next.plan(&[spec.clone()]).unwrap();
    assert_eq!(ops.retire_backends.len(), 1);
    assert_eq!(ops.retire_backends[0].0, 0);
    assert_eq!(ops.retire_backends[0].1.flags, 0);
    // Ids of the others did not move.
    let key = spec.key();
    assert_eq!(
        after.backend_id(&key, "198.18.1.12:80".parse().unwrap()),
        Some(1)
    );
    spec.backends.push(backend("198.18.1.14:80", 1));
    let (again, ops) = after.plan(&[spec]).unwrap();
    assert_eq!(
        again.backend_id(&key, "198.18.1.14:80".parse().unwrap()),
        Some(0)
    );
    assert_eq!(again.tables().backends[&0].generation, 2);
    assert!(ops.fresh_backend_ids.contains(&0));
}

#[test]
fn no_usable_backend_removes_the_table_and_sorry_takes_over() {
    let (next, _) = Balancer::new().plan(&[three()]).unwrap();
    let mut spec = three();
    for b in &mut spec.backends {
        b.state = BackendState::Disabled;
    }
    spec.sorry = Some("198.18.1.99:80".parse().unwrap());
    let (after, ops) = next.plan(&[spec]).unwrap();
    assert_eq!(ops.del_tables, vec![0]);
    let service = after.tables().services.values().next().unwrap();
    assert_eq!(service.sorry, 3);
    assert_eq!(after.tables().backends[&3].flags, backend_flags::LIVE);
}

#[test]
fn removing_a_service_deletes_it_then_its_table_then_its_backends() {
    let (next, _) = Balancer::new().plan(&[three()]).unwrap();
    let (after, ops) = next.plan(&[]).unwrap();
    assert_eq!(ops.del_services.len(), 1);
    assert_eq!(ops.del_tables, vec![0]);
    assert_eq!(ops.retire_backends.len(), 3);
    assert_eq!(after.tables(), &Tables::default());
}

#[test]
fn adopting_the_maps_of_a_previous_daemon_changes_nothing_that_is_still_there() {
    let (before, _) = Balancer::new().plan(&[three()]).unwrap();
    let mut mixed = before.tables().clone();
    // A stale service the previous daemon had, with a backend.
    mixed.services.insert(
        service("198.18.0.101", 80, vec![]).key(),
        Service {
            id: 1,
            mode: mode::NAT,
            sorry: NO_BACKEND,
        },
    );
    mixed.backends.insert(
        7,
        Backend {
            addr: addr_bytes("198.18.1.77".parse().unwrap()),
            port: [0, 80],
            family: AF_INET,
            flags: backend_flags::LIVE,
            generation: 4,
        },
    );
    let (after, ops) = Balancer::adopt(mixed).plan(&[three()]).unwrap();
    assert_eq!(after.tables(), before.tables());
    assert!(ops.put_backends.is_empty(), "{ops:?}");
    assert!(ops.fresh_backend_ids.is_empty(), "{ops:?}");
    assert!(
        ops.put_tables.is_empty() && ops.put_services.is_empty(),
        "{ops:?}"
    );
    assert_eq!(ops.del_services.len(), 1);
    assert_eq!(ops.retire_backends.len(), 1);
    assert_eq!(ops.retire_backends[0].0, 7);
}

#[test]
fn adopted_maps_without_maglev_tables_get_every_table_back() {
    // An upgrade that changed the tables' layout replaces their map alone:
    // adopted empty, it must be written whole before the program is.
    let (before, _) = Balancer::new().plan(&[three()]).unwrap();
    let mut adopted = before.tables().clone();
    adopted.maglev.clear();
    let (after, ops) = Balancer::adopt(adopted).plan(&[three()]).unwrap();
    assert_eq!(after.tables(), before.tables());
    let put: Vec<_> = ops.put_tables.iter().map(|(id, _)| *id).collect();
    let want: Vec<_> = before.tables().maglev.keys().copied().collect();
    assert_eq!(put, want);
    assert!(ops.put_services.is_empty() && ops.put_backends.is_empty());
}

#[test]
fn bad_configurations_are_refused_with_what_and_where() {
    let mut dsr = three();
    dsr.mode = Mode::Dsr;
    let mut dup = three();
    dup.backends.push(backend("198.18.1.11:80", 5));
    let mut mixed = three();
    mixed.backends.push(backend("[2001:db8:1::11]:80", 1));
    let mut heavy = three();
    heavy.backends[0].weight = MAX_WEIGHT + 1;
    let mut zero_port = three();
    zero_port.backends[0].addr = "198.18.1.11:0".parse().unwrap();
    let mut sorry = three();
    sorry.sorry = Some("[2001:db8::99]:80".parse().unwrap());
    let cases: Vec<(Vec<ServiceSpec>, &str)> = vec![
        (
            vec![dsr],
            "service tcp/198.18.0.100:80: backend 198.18.1.13:8080 must use the VIP's port 80 in DSR mode (the packet is not rewritten)",
        ),
        (
            vec![dup],
            "service tcp/198.18.0.100:80: backend 198.18.1.11:80 is listed twice",
        ),
        (
            vec![mixed],
            "service tcp/198.18.0.100:80: backend [2001:db8:1::11]:80 is not of the VIP's address family",
        ),
        (
            vec![heavy],
            "service tcp/198.18.0.100:80: backend 198.18.1.11:80 has weight 10001; the most is 10000",
        ),
        (
            vec![zero_port],
            "service tcp/198.18.0.100:80: backend 198.18.1.11:0 is not a usable unicast address and port",
        ),
        (
            vec![sorry],
            "service tcp/198.18.0.100:80: sorry server [2001:db8::99]:80 is not of the VIP's address family",
        ),
        (
            vec![three(), three()],
            "service tcp/198.18.0.100:80 is configured twice",
        ),
    ];
    let (base, _) = Balancer::new().plan(&[three()]).unwrap();
    for (wanted, message) in cases {
        let err = base.plan(&wanted).unwrap_err();
        assert_eq!(err.to_string(), message);
    }
    // The refused plans left the balancer as it was.
    let (_, ops) = base.plan(&[three()]).unwrap();
    assert!(ops.is_empty());
}

#[test]
fn backend_vips_list_each_nat_backends_services_and_change_only_with_them() {
    let a = three();
    // The same backend (and a sorry server) in a second NAT service, and a
    // DSR service, whose backends never see replies through us.
    let mut b = service("198.18.0.101", 80, vec![backend("198.18.1.11:80", 1)]);
    b.sorry = Some("198.18.1.20:80".parse().unwrap());
    let mut dsr = service("198.18.0.102", 80, vec![backend("198.18.1.30:80", 1)]);
    dsr.mode = Mode::Dsr;
    let (next, ops) = Balancer::new()
        .plan(&[a.clone(), b.clone(), dsr.clone()])
        .unwrap();
    let vips = ops.backend_vips.expect("first plan writes the map");
    let key = |addr: &str| {
        let addr: SocketAddr = addr.parse().unwrap();
        ServiceKey {
            addr: addr_bytes(addr.ip()),
            port: addr.port().to_be_bytes(),
            proto: lb_common::IPPROTO_TCP,
            family: AF_INET,
        }
    };
    assert_eq!(vips.len(), 4, "{vips:?}");
    assert!(!vips.contains_key(&key("198.18.1.30:80")));
    let shared = &vips[&key("198.18.1.11:80")];
    assert_eq!(shared.count, 2);
    let ids = [
        next.backend_id(&a.key(), "198.18.1.11:80".parse().unwrap()),
        next.backend_id(&b.key(), "198.18.1.11:80".parse().unwrap()),
    ];
    for (vip, (last, id)) in shared.vips[..2].iter().zip([(100, ids[0]), (101, ids[1])]) {
        assert_eq!(&vip.vip[..4], &[198, 18, 0, last]);
        assert_eq!(vip.vport, 80u16.to_be_bytes());
        assert_eq!(Some(vip.backend), id);
    }
    let sorry = &vips[&key("198.18.1.20:80")];
    assert_eq!(sorry.count, 1);
    assert_eq!(
        Some(sorry.vips[0].backend),
        next.sorry_id(&b.key(), "198.18.1.20:80".parse().unwrap())
    );

    // Unchanged: no write; a weight change leaves it alone too.
    let (_, ops) = next.plan(&[a.clone(), b.clone(), dsr.clone()]).unwrap();
    assert!(ops.is_empty(), "{ops:?}");
    let mut heavier = a.clone();
    heavier.backends[0].weight = 5;
    let (_, ops) = next.plan(&[heavier, b.clone(), dsr.clone()]).unwrap();
    assert_eq!(ops.backend_vips, None);
    // A service gone: written again without it.
    let (_, ops) = next.plan(&[a.clone(), dsr]).unwrap();
    let vips = ops.backend_vips.expect("written again");
    assert_eq!(vips[&key("198.18.1.11:80")].count, 1);
    assert!(!vips.contains_key(&key("198.18.1.20:80")));
    // Adopted maps: written whole on the first plan.
    let adopted = Balancer::adopt(next.tables().clone());
    let (_, ops) = adopted.plan(&[a, b]).unwrap();
    assert!(ops.backend_vips.is_some());
}

/// The filter's words after the two steps, starting from `map`.
fn filter_after(map: &BTreeMap<u32, u64>, ops: &Ops) -> (BTreeMap<u32, u64>, BTreeMap<u32, u64>) {
    let mut between = map.clone();
    between.extend(ops.set_service_addrs.iter().copied());
    let mut after = between.clone();
    after.extend(ops.clear_service_addrs.iter().copied());
    let nonzero = |m: BTreeMap<u32, u64>| m.into_iter().filter(|(_, w)| *w != 0).collect();
    (nonzero(between), nonzero(after))
}

fn has_bit(words: &BTreeMap<u32, u64>, vip: &str) -> bool {
    let ip: IpAddr = vip.parse().unwrap();
    let bit = lb_common::hash::service_addr_bit(&addr_bytes(ip), family(ip));
    words
        .get(&(bit / 64))
        .is_some_and(|w| w & (1 << (bit % 64)) != 0)
}

#[test]
fn service_address_bits_are_set_before_services_and_cleared_after_the_last_one() {
    let a = three();
    let mut a_udp = three();
    a_udp.protocol = Protocol::Udp;
    let b = service(
        "2001:db8::100",
        443,
        vec![backend("[2001:db8:1::11]:443", 1)],
    );
    let (next, ops) = Balancer::new().plan(&[a.clone(), b.clone()]).unwrap();
    let (between, map) = filter_after(&BTreeMap::new(), &ops);
    assert!(ops.clear_service_addrs.is_empty(), "{ops:?}");
    assert_eq!(between, map);
    assert!(has_bit(&map, "198.18.0.100") && has_bit(&map, "2001:db8::100"));
    assert_eq!(map, service_addr_words(next.tables().services.keys()));
    assert!(map.values().map(|w| w.count_ones()).sum::<u32>() == 2);

    // A second service on the same address: nothing to write.
    let (next, ops) = next.plan(&[a.clone(), a_udp.clone(), b.clone()]).unwrap();
    assert!(ops.set_service_addrs.is_empty() && ops.clear_service_addrs.is_empty());
    // One of the two gone: the address keeps its bit.
    let (next, ops) = next.plan(&[a_udp.clone(), b.clone()]).unwrap();
    assert!(ops.set_service_addrs.is_empty() && ops.clear_service_addrs.is_empty());
    // The IPv6 service replaced by another address: the new bit is set
    // while the old one stays (both services may be in the map), and the
    // old one is cleared once its service is removed.
    let c = service("198.18.0.101", 80, vec![backend("198.18.1.11:80", 1)]);
    let (next, ops) = next.plan(&[a_udp.clone(), c.clone()]).unwrap();
    let (between, after) = filter_after(&map, &ops);
    for vip in ["198.18.0.100", "2001:db8::100", "198.18.0.101"] {
        assert!(has_bit(&between, vip), "{vip}");
    }
    assert!(has_bit(&after, "198.18.0.101") && !has_bit(&after, "2001:db8::100"));
    assert_eq!(after, service_addr_words(next.tables().services.keys()));

    // Adopted maps (the map may hold anything, or be new): every word is
    // written, then the stale bits cleared.
    let stale: BTreeMap<u32, u64> = (0..SERVICE_ADDR_WORDS).map(|i| (i, u64::MAX)).collect();
    let adopted = Balancer::adopt(next.tables().clone());
    let (_, ops) = adopted.plan(&[a_udp.clone()]).unwrap();
    assert_eq!(ops.set_service_addrs.len(), SERVICE_ADDR_WORDS as usize);
    let (between, after) = filter_after(&stale, &ops);
    assert!(has_bit(&between, "198.18.0.101"));
    let want = service_addr_words(
        Balancer::new()
            .plan(&[a_udp])
            .unwrap()
            .0
            .tables()
            .services
            .keys(),
    );
    assert_eq!(after, want);
}
