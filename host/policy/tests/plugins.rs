//! The example plugins, loaded from their freshly built components
//! (./scripts/build-plugins.sh), decide as their own logic says on
//! concrete inputs; loading refuses every kind of wrong component; a
//! plugin is replaced while running.

mod fixtures;

use std::collections::BTreeMap;
use std::net::IpAddr;

use fixtures::{candidates, nodes, spec, wasm};
use herald_core::cni::{Action, Pod};
use herald_core::plugin::World;
use herald_core::policy::{
    AllocatorPolicy, AnnounceQuery, AnnouncerPolicy, Mode, Plugin, Policies,
};
use herald_core::pool::{PoolDecl, PoolSpec};
use herald_core::service::{Service, TrafficPolicy};
use herald_core::{Allocator, Config, Snapshot};
use herald_policy::{Error, Host, WasmPlugin};

fn host() -> Host {
    Host::new().expect("engine")
}

fn load(host: &Host, world: World, name: &str, config: &str) -> herald_policy::Loaded {
    let bytes = wasm(name);
    host.load(name, &spec(world, name, &bytes, config), &bytes)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn pool(name: &str, cidr: &str, plugin: Option<&str>) -> PoolDecl {
    let mut spec = PoolSpec::new(vec![cidr.parse().unwrap()]);
    spec.allocator_plugin = plugin.map(str::to_owned);
    PoolDecl {
        name: name.into(),
        created: None,
        spec: Ok(spec),
    }
}

fn services(names: &[&str]) -> Vec<Service> {
    names.iter().map(|n| Service::new("shop", n)).collect()
}

fn allocate_with(
    plugin: &dyn AllocatorPolicy,
    snapshot: &Snapshot,
) -> BTreeMap<String, (IpAddr, Option<String>)> {
    let mut policies = Policies::default();
    policies.allocators.insert(
        "stable".to_owned(),
        Plugin {
            policy: plugin,
            failure_policy: herald_core::plugin::FailurePolicy::Fail,
        },
    );
    let plan = Allocator::new(snapshot, &Config::default(), &policies).into_plan();
    assert!(plan.errors.is_empty(), "{:?}", plan.errors);
    plan.services
        .into_iter()
        .map(|o| (o.service.name, (o.ips[0], o.plugin)))
        .collect()
}

#[test]
fn stable_hash_gives_the_same_addresses_in_any_order_and_cluster() {
    let host = host();
    let plugin = load(&host, World::Allocator, "stable-hash", "{}");
    let names = ["web", "api", "db", "cache", "search", "auth"];
    let forward = Snapshot {
        pools: vec![pool("public", "198.51.100.0/24", Some("stable"))],
        services: services(&names),
        ..Snapshot::default()
    };
    let mut reversed = forward.clone();
    reversed.services.reverse();
    let a = allocate_with(&plugin, &forward);
    let b = allocate_with(&plugin, &reversed);
    assert_eq!(a, b, "the order Services come in must not matter");

    // Each address is where the plugin's own logic (run natively) puts it.
    for name in names {
        let (ip, by) = &a[name];
        assert_eq!(by.as_deref(), Some("stable"));
        let IpAddr::V4(v4) = ip else { panic!("{ip}") };
        let home = stable_hash::hash("", &format!("shop/{name}"));
        let expect = 0xc633_6400u128 + home % 256;
        // Equal unless another Service took that address first (probing).
        if u128::from(u32::from(*v4)) != expect {
            let taken = a
                .values()
                .any(|(o, _)| matches!(o, IpAddr::V4(x) if u128::from(u32::from(*x)) == expect));
            assert!(taken, "{name} got {ip}, expected {expect:x} which is free");
        }
    }
    // "Another cluster": a fresh host, a fresh load, same answer.
    let other = host.clone();
    other.clear_cache();
    let again = load(&other, World::Allocator, "stable-hash", "{}");
    assert_eq!(allocate_with(&again, &forward), a);
    // The salt gives another, equally stable, layout.
    let salted = load(&host, World::Allocator, "stable-hash", r#"{"salt":"eu"}"#);
    assert_ne!(allocate_with(&salted, &forward), a);
}

#[test]
fn stable_hash_probes_past_taken_addresses_in_a_small_pool() {
    let host = host();
    let plugin = load(&host, World::Allocator, "stable-hash", "{}");
    // 8 Services in a pool of 8: every address is used exactly once.
    let names: Vec<String> = (0..8).map(|i| format!("svc-{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let snapshot = Snapshot {
        pools: vec![pool("tiny", "203.0.113.8/29", Some("stable"))],
        services: services(&refs),
        ..Snapshot::default()
    };
    let got = allocate_with(&plugin, &snapshot);
    let mut ips: Vec<IpAddr> = got.values().map(|(ip, _)| *ip).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 8, "{got:?}");
}

#[test]
fn zone_spread_spreads_l2_owners_over_zones_as_its_logic_says() {
    let host = host();
    let plugin = load(&host, World::Announcer, "zone-spread", "{}");
    // 6 nodes in zone-a, 2 in zone-b (round-robin over 4 zones, then
    // relabelled): the built-in policy would give zone-b a quarter.
    let mut ns = nodes(8, 1);
    for n in &mut ns[6..] {
        std::sync::Arc::make_mut(&mut n.labels)
            .insert(herald_core::node::ZONE_LABEL.into(), "zone-b".into());
    }
    let svc = Service::new("shop", "web");
    let mut per_zone: BTreeMap<String, u32> = BTreeMap::new();
    for i in 0..200u32 {
        let vip = IpAddr::from((0xc633_6400u32 + i).to_be_bytes());
        let q = AnnounceQuery {
            vip,
            mode: Mode::L2,
            services: vec![&svc],
            eligible: candidates(&ns, |_| 1),
        };
        let answer = plugin.announce(&q).unwrap();
        assert_eq!(answer.len(), 1);
        // The component decides exactly as the crate's logic does natively.
        let native: Vec<zone_spread::Node> = ns
            .iter()
            .map(|n| zone_spread::Node {
                name: n.name.clone(),
                zone: n.zone().unwrap_or_default().to_owned(),
                endpoints: 1,
            })
            .collect();
        let IpAddr::V4(v4) = vip else { unreachable!() };
        let want = zone_spread::l2_owner(&native, &v4.octets(), false).unwrap();
        assert_eq!(answer[0].node, want.name);
        *per_zone.entry(want.zone.clone()).or_default() += 1;
    }
    let b = per_zone["zone-b"];
    assert!(
        (70..=130).contains(&b),
        "zone-b owns {b} of 200: {per_zone:?}"
    );
}

#[test]
fn zone_spread_respects_external_traffic_policy_local() {
    let host = host();
    let plugin = load(&host, World::Announcer, "zone-spread", "{}");
    let ns = nodes(6, 3);
    let mut svc = Service::new("shop", "web");
    svc.traffic_policy = TrafficPolicy::Local;
    for i in 0..50u32 {
        let q = AnnounceQuery {
            vip: IpAddr::from((0xc633_6400u32 + i).to_be_bytes()),
            mode: Mode::L2,
            services: vec![&svc],
            // Only node-04 has endpoints.
            eligible: candidates(&ns, |i| u32::from(i == 4)),
        };
        assert_eq!(plugin.announce(&q).unwrap()[0].node, "node-04");
    }
}

#[test]
fn zone_spread_reads_a_custom_zone_label_from_the_host_on_request() {
    // The racks are only in `example.com/rack`, which the query does not
    // carry: the plugin asks the host (`nodes.label`) for each node.
    let host = host();
    let plugin = load(
        &host,
        World::Announcer,
        "zone-spread",
        r#"{"zoneLabel":"example.com/rack"}"#,
    );
    let mut ns = nodes(8, 1);
    for (i, n) in ns.iter_mut().enumerate() {
        let rack = if i < 6 { "rack-1" } else { "rack-2" };
        std::sync::Arc::make_mut(&mut n.labels).insert("example.com/rack".into(), rack.into());
    }
    let svc = Service::new("shop", "web");
    let native: Vec<zone_spread::Node> = ns
        .iter()
        .map(|n| zone_spread::Node {
            name: n.name.clone(),
            zone: n.labels["example.com/rack"].clone(),
            endpoints: 1,
        })
        .collect();
    let mut rack_2 = 0;
    for i in 0..100u32 {
        let v4 = std::net::Ipv4Addr::from(0xc633_6400u32 + i);
        let q = AnnounceQuery {
            vip: IpAddr::V4(v4),
            mode: Mode::L2,
            services: vec![&svc],
            eligible: candidates(&ns, |_| 1),
        };
        let answer = plugin.announce(&q).unwrap();
        let want = zone_spread::l2_owner(&native, &v4.octets(), false).unwrap();
        assert_eq!(answer[0].node, want.name, "VIP {v4}");
        rack_2 += u32::from(want.zone == "rack-2");
    }
    // Spread by rack, not by the (single) topology zone.
    assert!((30..=70).contains(&rack_2), "rack-2 owns {rack_2} of 100");
}

#[test]
fn endpoint_weighted_weights_by_endpoints_with_annotated_attributes() {
    let host = host();
    let plugin = load(
        &host,
        World::Announcer,
        "endpoint-weighted",
        r#"{"weightPerEndpoint":10}"#,
    );
    let ns = nodes(4, 2);
    let mut svc = Service::new("shop", "web");
    for (k, v) in [
        ("local-pref", "250"),
        ("communities", "64512:100,64512:7"),
        ("large-communities", "4200000001:1:2"),
    ] {
        svc.annotations
            .insert(format!("endpoint-weighted.herald.dev/{k}"), v.to_owned());
    }
    let q = AnnounceQuery {
        vip: "198.51.100.7".parse().unwrap(),
        mode: Mode::Bgp,
        services: vec![&svc],
        eligible: candidates(&ns, |i| [3, 0, 1, 6][i]),
    };
    let answer = plugin.announce(&q).unwrap();
    let weights: Vec<(&str, u32)> = answer.iter().map(|c| (c.node.as_str(), c.weight)).collect();
    assert_eq!(weights, [("node-00", 30), ("node-02", 10), ("node-03", 60)]);
    for c in &answer {
        assert_eq!(c.local_pref, Some(250));
        assert_eq!(
            c.communities,
            [
                herald_core::bgp::Community(64512 << 16 | 100),
                herald_core::bgp::Community(64512 << 16 | 7)
            ]
        );
        assert_eq!(c.large_communities[0].global_administrator, 4_200_000_001);
    }
    // A malformed annotation is the plugin's error, reported with its name.
    let mut bad = svc.clone();
    bad.annotations
        .insert("endpoint-weighted.herald.dev/med".into(), "low".into());
    let q = AnnounceQuery {
        services: vec![&bad],
        ..q
    };
    let e = plugin.announce(&q).unwrap_err();
    assert_eq!(e.plugin, "endpoint-weighted");
    assert!(e.message.contains("\"low\""), "{e}");
}

#[test]
fn dsr_loopback_puts_the_vip_on_lo_of_pods_behind_marked_services() {
    let host = host();
    let plugin = load(&host, World::CniChain, "dsr-loopback", "{}");
    let mut marked = Service::new("shop", "web");
    marked
        .annotations
        .insert("dsr-loopback.herald.dev/enabled".into(), "true".into());
    let plain = Service::new("shop", "api");
    let pod = Pod {
        namespace: "shop".into(),
        name: "web-1".into(),
        interface: "eth0".into(),
        addresses: vec!["10.244.0.5".parse().unwrap()],
        services: vec![
            (marked, vec!["198.51.100.7".parse().unwrap()]),
            (plain, vec!["198.51.100.8".parse().unwrap()]),
        ],
    };
    let actions = plugin.setup(&pod).unwrap();
    let text: Vec<String> = actions.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        [
            "address 198.51.100.7/32 on lo",
            "sysctl net.ipv4.conf.all.arp_announce=2",
            "sysctl net.ipv4.conf.all.arp_ignore=1",
            "sysctl net.ipv4.conf.eth0.arp_announce=2",
            "sysctl net.ipv4.conf.eth0.arp_ignore=1",
        ]
    );
    assert!(matches!(actions[0], Action::AddAddress { .. }));
}

#[test]
fn loading_refuses_every_kind_of_wrong_component_precisely() {
    let host = host();
    let good = wasm("zone-spread");
    let mut s = spec(World::Announcer, "p", &good, "{}");

    s.sha256[0] ^= 1;
    let e = host.load("p", &s, &good).unwrap_err();
    assert!(matches!(e, Error::Digest { .. }), "{e}");
    assert!(e.to_string().contains("sha256 mismatch"), "{e}");

    let text = b"not wasm at all".to_vec();
    let e = host
        .load("p", &spec(World::Announcer, "p", &text, "{}"), &text)
        .unwrap_err();
    assert!(e.to_string().contains("not WebAssembly at all"), "{e}");

    // A core module (the smallest one: header only).
    let core = b"\0asm\x01\0\0\0".to_vec();
    let e = host
        .load("p", &spec(World::Announcer, "p", &core, "{}"), &core)
        .unwrap_err();
    assert!(e.to_string().contains("core WebAssembly module"), "{e}");

    let fs = wasm("hostile-forbidden-import");
    let e = host
        .load("thief", &spec(World::Announcer, "thief", &fs, "{}"), &fs)
        .unwrap_err();
    match &e {
        Error::ForbiddenImport {
            plugin, imports, ..
        } => {
            assert_eq!(plugin, "thief");
            assert!(
                imports.iter().any(|i| i.starts_with("wasi:filesystem/")),
                "{imports:?}"
            );
        }
        other => panic!("{other}"),
    }

    let ww = wasm("hostile-wrong-world");
    let e = host
        .load("ww", &spec(World::Announcer, "ww", &ww, "{}"), &ww)
        .unwrap_err();
    // The world is checked before the imports: the message says what the
    // plugin is, not that `pools` is not granted to an announcer.
    assert!(matches!(e, Error::WrongWorld { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("it implements the allocator world (exports herald:policy/allocate@0.1.0), not announcer"),
        "{e}"
    );
    // An announcer loaded as an allocator lacks the allocate export.
    let e = host
        .load("za", &spec(World::Allocator, "za", &good, "{}"), &good)
        .unwrap_err();
    assert!(matches!(e, Error::WrongWorld { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("it implements the announcer world (exports herald:policy/announce@0.1.0), not allocator: it lacks herald:policy/allocate@0.1.0"),
        "{e}"
    );

    let e = host
        .load(
            "p",
            &spec(World::Announcer, "p", &good, r#"{"zone":1}"#),
            &good,
        )
        .unwrap_err();
    assert!(matches!(e, Error::Config { .. }), "{e}");
    assert!(e.to_string().contains("unknown field `zone`"), "{e}");
}

#[test]
fn hot_replacement_takes_a_good_version_and_keeps_the_old_on_a_bad_one() {
    let host = host();
    let zs = wasm("zone-spread");
    let ew = wasm("endpoint-weighted");
    let plugin = WasmPlugin::new(
        host.load(
            "announcer",
            &spec(World::Announcer, "announcer", &zs, "{}"),
            &zs,
        )
        .unwrap(),
    );
    let ns = nodes(4, 2);
    let svc = Service::new("shop", "web");
    let q = AnnounceQuery {
        vip: "198.51.100.7".parse().unwrap(),
        mode: Mode::Bgp,
        services: vec![&svc],
        eligible: candidates(&ns, |i| [0, 5, 0, 1][i]),
    };
    // zone-spread announces from every node.
    assert_eq!(plugin.announce(&q).unwrap().len(), 4);
    let first = plugin.current().digest();

    // A good new version: the next decision is the new plugin's.
    plugin
        .replace(&host, &spec(World::Announcer, "announcer", &ew, "{}"), &ew)
        .unwrap();
    assert_ne!(plugin.current().digest(), first);
    let nodes_now: Vec<String> = plugin
        .announce(&q)
        .unwrap()
        .into_iter()
        .map(|c| c.node)
        .collect();
    assert_eq!(
        nodes_now,
        ["node-01", "node-03"],
        "endpoint-weighted drops empty nodes"
    );

    // A broken new version: refused with the reason; the old keeps running.
    let running = plugin.current().digest();
    let broken = wasm("hostile-forbidden-import");
    let e = plugin
        .replace(
            &host,
            &spec(World::Announcer, "announcer", &broken, "{}"),
            &broken,
        )
        .unwrap_err();
    assert!(e.to_string().contains("wasi:filesystem"), "{e}");
    let mut bad_digest = spec(World::Announcer, "announcer", &zs, "{}");
    bad_digest.sha256 = [0; 32];
    assert!(plugin.replace(&host, &bad_digest, &zs).is_err());
    assert_eq!(plugin.current().digest(), running);
    assert_eq!(plugin.announce(&q).unwrap().len(), 2);
}
