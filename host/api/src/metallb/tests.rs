//! The import's rules one by one, and the property the migration rests on:
//! Services holding addresses MetalLB gave them keep them under the
//! imported pools.

use std::net::IpAddr;

use herald_core::service::FamilyPolicy;
use herald_core::{Config, Family, Service, Snapshot, allocate};
use proptest::prelude::*;

use super::*;

fn import_text(yaml: &str) -> Import {
    import(&read("test.yaml", yaml).unwrap()).unwrap()
}

#[test]
fn restricted_pools_get_priorities_after_the_set_ones() {
    let i = import_text(
        r#"
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: open}
spec: {addresses: [198.51.100.0/26]}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: seven}
spec:
  addresses: [198.51.100.64/26]
  serviceAllocation: {priority: 7, namespaces: [a]}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: unset}
spec:
  addresses: [198.51.100.128/26]
  serviceAllocation: {serviceSelectors: [{matchLabels: {app: x}}]}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: nothing}
spec:
  addresses: [198.51.100.192/26]
  serviceAllocation: {priority: 3}
"#,
    );
    let priority = |name: &str| {
        let p = i
            .pools
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .unwrap();
        (
            p.spec.allocation.as_ref().and_then(|a| a.priority),
            p.spec.auto_assign,
        )
    };
    assert_eq!(priority("open"), (None, None));
    assert_eq!(priority("seven"), (Some(7), None));
    assert_eq!(priority("unset"), (Some(8), None));
    // Restricts nothing: MetalLB never assigns from it automatically.
    assert_eq!(priority("nothing"), (None, Some(false)));
    assert!(
        i.dropped
            .iter()
            .any(|d| d.field == "spec.serviceAllocation.priority"),
        "{:?}",
        i.dropped
    );
}

#[test]
fn namespaces_and_namespace_selectors_are_either_or() {
    let i = import_text(
        r#"
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: p}
spec:
  addresses: [198.51.100.0/26]
  serviceAllocation:
    namespaces: [a, b]
    namespaceSelectors: [{matchLabels: {kubernetes.io/metadata.name: c}}]
"#,
    );
    let alloc = i.pools[0].spec.allocation.clone().unwrap();
    assert_eq!(alloc.namespaces, None);
    let sel = alloc.namespace_selector.unwrap();
    let expr = &sel.match_expressions.unwrap()[0];
    assert_eq!(expr.key, "kubernetes.io/metadata.name");
    assert_eq!(expr.values.clone().unwrap(), ["a", "b", "c"]);
    assert!(i.dropped.is_empty(), "{:?}", i.dropped);
}

#[test]
fn selectors_that_cannot_be_joined_are_reported() {
    let i = import_text(
        r#"
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: p}
spec:
  myASN: 64512
  peerASN: 64500
  peerAddress: 192.0.2.1
  nodeSelectors:
  - matchLabels: {rack: a}
  - matchLabels: {zone: b}
"#,
    );
    let d = &i.dropped[0];
    assert_eq!(d.field, "spec.nodeSelectors[1..]");
    let sel = i.bgp_peers[0].spec.node_selector.clone().unwrap();
    assert_eq!(sel.match_labels.unwrap()["rack"], "a");
}

#[test]
fn peers_follow_metallb_defaults() {
    let i = import_text(
        r#"
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: p, namespace: lb}
spec:
  myASN: 64512
  peerASN: 64500
  peerAddress: 192.0.2.1
  keepaliveTime: 10s
  passwordSecret: {name: md5}
  ebgpMultiHop: true
  enableGracefulRestart: true
"#,
    );
    let spec = &i.bgp_peers[0].spec;
    // Keepalive alone: MetalLB holds three times as long.
    assert_eq!(
        spec.hold_time,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(30))
    );
    let secret = spec.password_secret.clone().unwrap();
    assert_eq!(
        (secret.namespace.as_str(), secret.name.as_str()),
        ("lb", "md5")
    );
    assert_eq!(spec.ebgp_multi_hop, Some(255));
    assert_eq!(spec.graceful_restart, Some(true));
    assert_eq!(spec.families, Some(vec![crate::bgp::AddressFamily::Ipv4]));
    assert!(i.bgp_peers[0].validate().is_ok());
    assert!(i.dropped.is_empty(), "{:?}", i.dropped);
}

#[test]
fn unknown_fields_are_reported_not_lost() {
    let i = import_text(
        r#"
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: l2}
spec: {interfaces: [eth0], futureField: 1}
"#,
    );
    assert_eq!(i.dropped[0].field, "spec.futureField");
}

#[test]
fn community_values_and_aliases() {
    assert_eq!(
        translate_community("64512:100"),
        Some((false, "64512:100".into()))
    );
    assert_eq!(
        translate_community("large:4200000000:1:2"),
        Some((true, "4200000000:1:2".into()))
    );
    assert_eq!(translate_community("65536:1"), None);
    assert_eq!(translate_community("large:1:2"), None);
    assert_eq!(translate_community("no-export"), None);
}

fn translate_community(text: &str) -> Option<(bool, String)> {
    translate::parse_community(text)
}

/// A MetalLB pool for the property: a /28 (written with or without host
/// bits) or a range, optionally restricted to namespaces, with a priority.
#[derive(Clone, Debug)]
struct PoolCase {
    v6: bool,
    host_bits: u8,
    range: bool,
    namespaces: Vec<&'static str>,
    priority: i32,
    auto_assign: bool,
    avoid_buggy: bool,
}

const NAMESPACES: [&str; 3] = ["a", "b", "c"];

fn pool_case() -> impl Strategy<Value = PoolCase> {
    (
        any::<bool>(),
        0u8..16,
        any::<bool>(),
        proptest::sample::subsequence(NAMESPACES.to_vec(), 0..=2),
        0i32..3,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(v6, host_bits, range, namespaces, priority, auto_assign, avoid_buggy)| PoolCase {
                v6,
                host_bits,
                range,
                namespaces,
                priority,
                auto_assign,
                avoid_buggy,
            },
        )
}

/// The `k`th pool's block: 16 addresses, distinct per pool.
fn block(k: usize, v6: bool) -> (IpAddr, IpAddr) {
    if v6 {
        let first: IpAddr = format!("2001:db8::{:x}", k * 16).parse().unwrap();
        let last: IpAddr = format!("2001:db8::{:x}", k * 16 + 15).parse().unwrap();
        (first, last)
    } else {
        let base = 198 * 16_777_216u32 + 51 * 65_536 + 100 * 256;
        let first = IpAddr::from((base + 16 * k as u32).to_be_bytes());
        let last = IpAddr::from((base + 16 * k as u32 + 15).to_be_bytes());
        (first, last)
    }
}

fn offset(ip: IpAddr, by: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::from((u32::from(v4) + u32::from(by)).to_be_bytes()),
        IpAddr::V6(v6) => IpAddr::from((u128::from(v6) + u128::from(by)).to_be_bytes()),
    }
}

fn metallb_yaml(pools: &[PoolCase]) -> String {
    let mut yaml = String::new();
    for (k, p) in pools.iter().enumerate() {
        let (first, last) = block(k, p.v6);
        let entry = if p.range {
            format!("\"{first}-{last}\"")
        } else {
            let len = if p.v6 { 124 } else { 28 };
            format!("\"{}/{len}\"", offset(first, p.host_bits))
        };
        let allocation = if p.namespaces.is_empty() {
            String::new()
        } else {
            format!(
                "  serviceAllocation: {{priority: {}, namespaces: [{}]}}\n",
                p.priority,
                p.namespaces.join(", ")
            )
        };
        yaml.push_str(&format!(
            "---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: pool-{k}, namespace: metallb-system}}\nspec:\n  addresses: [{entry}]\n  autoAssign: {}\n  avoidBuggyIPs: {}\n{allocation}",
            p.auto_assign, p.avoid_buggy
        ));
    }
    yaml
}

/// Whether MetalLB would let a Service of `namespace` hold `ip` from pool
/// `p` (its `Assign`: the pool admits the namespace; avoidBuggyIPs
/// addresses are in no pool).
fn metallb_allows(p: &PoolCase, namespace: &str, ip: IpAddr) -> bool {
    let buggy = matches!(ip, IpAddr::V4(v4) if matches!(v4.octets()[3], 0 | 255));
    (p.namespaces.is_empty() || p.namespaces.contains(&namespace)) && !(p.avoid_buggy && buggy)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// For random pool sets and Services holding addresses MetalLB could
    /// have given them, the imported plan moves no Service.
    #[test]
    fn imported_plan_moves_no_service(
        pools in proptest::collection::vec(pool_case(), 1..6),
        services in proptest::collection::vec((0usize..6, 0u8..16, 0usize..3, 0i64..1000), 0..30),
    ) {
        let imported = import(&read("prop.yaml", &metallb_yaml(&pools)).unwrap()).unwrap();
        let mut snapshot = Snapshot::default();
        for p in &imported.pools {
            crate::inputs::add_pool(&mut snapshot, p);
        }
        let mut held = std::collections::BTreeSet::new();
        let mut expected = Vec::new();
        for (n, (k, at, ns, age)) in services.into_iter().enumerate() {
            let k = k % pools.len();
            let p = &pools[k];
            let ip = offset(block(k, p.v6).0, at);
            let namespace = NAMESPACES[ns];
            // MetalLB gives an address to one Service (no sharing keys
            // here) and only from a pool that admits it.
            if !metallb_allows(p, namespace, ip) || !held.insert(ip) {
                continue;
            }
            let mut s = Service::new(namespace, &format!("svc-{n}"));
            s.family_policy = FamilyPolicy::SingleStack;
            s.families = vec![Family::of(ip)];
            s.status_ips = vec![ip];
            s.created = Some(age);
            s.ports = vec![herald_core::service::Port { port: 80, protocol: "TCP".into() }];
            expected.push((s.id.clone(), ip));
            snapshot.services.push(s);
        }
        let plan = allocate(&snapshot, &Config::default());
        prop_assert!(plan.errors.is_empty(), "{:?}", plan.errors);
        for (id, ip) in expected {
            let o = plan.services.iter().find(|o| o.service == id).unwrap();
            prop_assert_eq!(&o.ips, &vec![ip], "{} moved: {:?}", id, o);
        }
    }
}

#[test]
fn lists_as_kubectl_exports_them_are_read_item_by_item() {
    let objects = read(
        "export.yaml",
        r#"
apiVersion: v1
kind: List
items:
- apiVersion: metallb.io/v1beta1
  kind: IPAddressPool
  metadata: {name: a, namespace: metallb-system, resourceVersion: "1", uid: x}
  spec: {addresses: [198.51.100.0/24]}
  status: {assignedIPv4: 1}
- apiVersion: metallb.io/v1beta1
  kind: L2Advertisement
  metadata: {name: l2, namespace: metallb-system}
"#,
    )
    .unwrap();
    assert_eq!(objects.len(), 2);
    assert_eq!(
        objects[0].origin.object,
        "IPAddressPool \"metallb-system/a\""
    );
    let i = import(&objects).unwrap();
    assert_eq!((i.pools.len(), i.l2_advertisements.len()), (1, 1));
    assert!(i.dropped.is_empty(), "{:?}", i.dropped);
    let err = read(
        "export.yaml",
        "apiVersion: v1\nkind: List\nitems:\n- {kind: Pod, apiVersion: v1, metadata: {name: p}}\n",
    )
    .unwrap_err();
    assert_eq!(err.object, "Pod \"p\"");
}
