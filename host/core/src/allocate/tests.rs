//! One test (or a few) per rule of DESIGN.md §4, named after the rule.

use super::*;
use crate::config::DEFAULT_LOAD_BALANCER_CLASS;
use crate::pool::{InvalidPool, InvalidReason, PoolSpec};
use crate::selector::{LabelSelector, Requirement};
use crate::service::{Port, TrafficPolicy};

fn decl(name: &str, addresses: &[&str], edit: impl FnOnce(&mut PoolSpec)) -> PoolDecl {
    let mut spec = PoolSpec::new(addresses.iter().map(|a| a.parse().unwrap()).collect());
    edit(&mut spec);
    PoolDecl {
        name: name.to_owned(),
        created: None,
        spec: Ok(spec),
    }
}

fn pool(name: &str, addresses: &[&str]) -> PoolDecl {
    decl(name, addresses, |_| {})
}

fn svc(id: &str) -> Service {
    let (ns, name) = id.split_once('/').unwrap();
    Service::new(ns, name)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn with_ips(mut s: Service, ips: &str) -> Service {
    s.request = Request::Ips(ips.split(',').map(ip).collect());
    s
}

fn shared(mut s: Service, key: &str, ports: &[u16]) -> Service {
    s.sharing_key = Some(key.to_owned());
    s.ports = ports
        .iter()
        .map(|&port| Port {
            port,
            protocol: "TCP".into(),
        })
        .collect();
    s
}

fn dual(mut s: Service, policy: FamilyPolicy) -> Service {
    s.family_policy = policy;
    s
}

fn aged(mut s: Service, t: i64) -> Service {
    s.created = Some(t);
    s
}

fn plan(pools: Vec<PoolDecl>, services: Vec<Service>) -> Plan {
    allocate(
        &Snapshot {
            pools,
            services,
            ..Default::default()
        },
        &Config::default(),
    )
}

fn outcome<'a>(plan: &'a Plan, id: &str) -> &'a Outcome {
    plan.services
        .iter()
        .find(|o| o.service.to_string() == id)
        .unwrap_or_else(|| panic!("{id} is not in the plan: {plan:#?}"))
}

fn ips(plan: &Plan, id: &str) -> Vec<String> {
    outcome(plan, id)
        .ips
        .iter()
        .map(|i| i.to_string())
        .collect()
}

fn reason(plan: &Plan, id: &str) -> Option<PendingReason> {
    outcome(plan, id).pending.as_ref().map(|p| p.reason)
}

/// Runs the plan again with its own allocations fed back, as after a restart.
fn replan(previous: &Plan, pools: Vec<PoolDecl>, services: Vec<Service>) -> Plan {
    allocate(
        &Snapshot {
            pools,
            services,
            allocations: previous.allocations(),
            ..Default::default()
        },
        &Config::default(),
    )
}

// §4.1 Which Services.

#[test]
fn which_services_only_type_load_balancer_qualifies() {
    let mut cluster_ip = svc("a/internal");
    cluster_ip.load_balancer = false;
    let p = plan(
        vec![pool("p", &["198.51.100.0/30"])],
        vec![cluster_ip, svc("a/web")],
    );
    assert_eq!(p.services.len(), 1);
    assert_eq!(ips(&p, "a/web"), ["198.51.100.0"]);
}

#[test]
fn which_services_load_balancer_class_unset_or_herald() {
    let mut ours = svc("a/ours");
    ours.class = Some(DEFAULT_LOAD_BALANCER_CLASS.into());
    let mut theirs = svc("a/theirs");
    theirs.class = Some("other.io/lb".into());
    let p = plan(
        vec![pool("p", &["198.51.100.0/30"])],
        vec![ours, theirs, svc("a/unset")],
    );
    let names: Vec<String> = p.services.iter().map(|o| o.service.to_string()).collect();
    assert_eq!(names, ["a/ours", "a/unset"]);
}

#[test]
fn which_services_a_service_that_stops_qualifying_releases_its_ips() {
    let pools = || vec![pool("p", &["198.51.100.0/31"])];
    let first = plan(pools(), vec![aged(svc("a/old"), 1)]);
    let mut old = aged(svc("a/old"), 1);
    old.class = Some("other.io/lb".into());
    let second = replan(&first, pools(), vec![old, aged(svc("a/new"), 2)]);
    assert_eq!(ips(&second, "a/new"), ["198.51.100.0"]);
}

// §4.2 Addresses of a pool.

#[test]
fn pool_addresses_include_network_and_broadcast() {
    let p = plan(
        vec![pool("p", &["198.51.100.0/30"])],
        (0..4).map(|i| aged(svc(&format!("a/s{i}")), i)).collect(),
    );
    assert_eq!(ips(&p, "a/s0"), ["198.51.100.0"]);
    assert_eq!(ips(&p, "a/s3"), ["198.51.100.3"]);
    assert_eq!(p.pools[0].capacity, 4);
    assert_eq!(p.pools[0].allocated, 4);
}

#[test]
fn pool_usage_is_counted_by_family_too() {
    let p = plan(
        vec![pool("p", &["198.51.100.0/30", "2001:db8::/120"])],
        vec![
            aged(dual(svc("a/both"), FamilyPolicy::PreferDualStack), 1),
            aged(svc("a/four"), 2),
        ],
    );
    let usage = &p.pools[0];
    let [v4, v6] = usage.families;
    assert_eq!((v4.capacity, v4.allocated), (4, 2));
    assert_eq!((v6.capacity, v6.allocated), (256, 1));
    assert_eq!((usage.capacity, usage.allocated), (260, 3));
}

#[test]
fn pool_avoid_buggy_ips_skips_dot_zero_and_dot_255() {
    let p = plan(
        vec![decl("p", &["198.51.100.254-198.51.101.1"], |s| {
            s.avoid_buggy_ips = true
        })],
        vec![
            aged(svc("a/s1"), 1),
            aged(svc("a/s2"), 2),
            aged(svc("a/s3"), 3),
        ],
    );
    assert_eq!(ips(&p, "a/s1"), ["198.51.100.254"]);
    assert_eq!(ips(&p, "a/s2"), ["198.51.101.1"]);
    assert_eq!(reason(&p, "a/s3"), Some(PendingReason::PoolExhausted));
    assert_eq!(p.pools[0].capacity, 2);
}

#[test]
fn pool_overlapping_an_earlier_pool_is_invalid_and_reported() {
    let mut early = pool("zz-early", &["198.51.100.0/24"]);
    early.created = Some(1);
    let mut late = pool("aa-late", &["198.51.100.128/25", "203.0.113.0/24"]);
    late.created = Some(2);
    let p = plan(vec![late, early], vec![svc("a/web")]);
    assert_eq!(ips(&p, "a/web"), ["198.51.100.0"]);
    let late = p.pools.iter().find(|u| u.name == "aa-late").unwrap();
    assert!(!late.valid);
    assert_eq!(
        late.invalid.as_ref().map(|i| i.reason),
        Some(InvalidReason::Overlapping)
    );
    assert_eq!(late.invalid.as_ref().unwrap().message, p.errors[0].message);
    assert_eq!(late.capacity, 0);
    assert_eq!(p.errors.len(), 1);
    assert_eq!(p.errors[0].name, "aa-late");
    assert!(
        p.errors[0].message.contains("zz-early"),
        "{}",
        p.errors[0].message
    );
}

#[test]
fn pool_without_creation_time_counts_as_newer_in_overlaps() {
    let mut dated = pool("b", &["198.51.100.0/24"]);
    dated.created = Some(100);
    let undated = pool("a", &["198.51.100.0/24"]);
    let p = plan(vec![undated, dated], vec![]);
    assert_eq!(p.errors[0].name, "a");
}

#[test]
fn pool_overlap_with_an_invalid_pool_does_not_invalidate() {
    let a = pool("a", &["198.51.100.0/24"]);
    let b = pool("b", &["198.51.100.0/25"]); // overlaps a: invalid
    let c = pool("c", &["2001:db8::/120"]);
    let mut d = pool("d", &["2001:db8::/121"]); // overlaps c: invalid
    d.created = None;
    let e = decl("e", &["203.0.113.0/24"], |_| {});
    let p = plan(vec![a, b, c, d, e], vec![]);
    let valid: Vec<&str> = p
        .pools
        .iter()
        .filter(|u| u.valid)
        .map(|u| u.name.as_str())
        .collect();
    assert_eq!(valid, ["a", "c", "e"]);
    // "f" overlaps only "b", which is invalid: f stays valid.
    let p = plan(
        vec![
            pool("a", &["198.51.100.0/25"]),
            pool("b", &["198.51.100.0/24"]),
            pool("f", &["198.51.100.128/25"]),
        ],
        vec![],
    );
    let valid: Vec<&str> = p
        .pools
        .iter()
        .filter(|u| u.valid)
        .map(|u| u.name.as_str())
        .collect();
    assert_eq!(valid, ["a", "f"]);
}

#[test]
fn pool_entries_of_one_pool_may_overlap_each_other() {
    let p = plan(
        vec![pool("p", &["198.51.100.0/24", "198.51.100.0/25"])],
        vec![],
    );
    assert!(p.pools[0].valid);
    assert_eq!(p.pools[0].capacity, 256);
}

#[test]
fn pool_malformed_is_reported_and_everything_else_goes_on() {
    let bad = PoolDecl {
        name: "bad".into(),
        created: None,
        spec: Err("spec.addresses[0]: nope".into()),
    };
    let p = plan(
        vec![bad, pool("good", &["198.51.100.0/24"])],
        vec![svc("a/web")],
    );
    assert_eq!(ips(&p, "a/web"), ["198.51.100.0"]);
    assert_eq!(p.errors[0].kind, "IPPool");
    assert_eq!(p.errors[0].message, "spec.addresses[0]: nope");
    assert!(!p.pools[0].valid);
    assert_eq!(
        p.pools[0].invalid,
        Some(InvalidPool {
            reason: InvalidReason::Malformed,
            message: "spec.addresses[0]: nope".into()
        })
    );
    assert_eq!(p.pools[1].invalid, None);
}

#[test]
fn pool_with_a_duplicate_name_later_is_invalid() {
    let mut first = pool("p", &["198.51.100.0/24"]);
    first.created = Some(1);
    let second = pool("p", &["203.0.113.0/24"]);
    let p = plan(vec![second, first], vec![svc("a/web")]);
    assert_eq!(ips(&p, "a/web"), ["198.51.100.0"]);
    assert_eq!(p.pools.iter().filter(|u| !u.valid).count(), 1);
    assert!(p.errors[0].message.contains("same name"));
    let reasons: Vec<_> = p
        .pools
        .iter()
        .map(|u| u.invalid.as_ref().map(|i| i.reason))
        .collect();
    assert!(reasons.contains(&Some(InvalidReason::DuplicateName)));
    assert!(reasons.contains(&None));
}

// §4.3 Candidate pools.

#[test]
fn candidates_need_auto_assign() {
    let p = plan(
        vec![
            decl("a", &["198.51.100.0/24"], |s| s.auto_assign = false),
            pool("b", &["203.0.113.0/24"]),
        ],
        vec![svc("x/web")],
    );
    assert_eq!(ips(&p, "x/web"), ["203.0.113.0"]);
}

#[test]
fn candidates_namespaces_list() {
    let p = plan(
        vec![
            decl("a", &["198.51.100.0/24"], |s| {
                s.namespaces = vec!["team-a".into()]
            }),
            pool("b", &["203.0.113.0/24"]),
        ],
        vec![svc("team-a/web"), svc("team-b/web")],
    );
    assert_eq!(ips(&p, "team-a/web"), ["198.51.100.0"]);
    assert_eq!(ips(&p, "team-b/web"), ["203.0.113.0"]);
}

#[test]
fn candidates_namespace_selector_on_namespace_labels() {
    let sel = LabelSelector {
        match_labels: Labels::from([("tier".into(), "gold".into())]),
        ..Default::default()
    };
    let snapshot = Snapshot {
        pools: vec![decl("gold", &["198.51.100.0/24"], |s| {
            s.namespace_selector = Some(sel)
        })],
        services: vec![svc("rich/web"), svc("poor/web")],
        namespaces: BTreeMap::from([(
            "rich".to_owned(),
            Labels::from([("tier".into(), "gold".into())]),
        )]),
        allocations: vec![],
    };
    let p = allocate(&snapshot, &Config::default());
    assert_eq!(ips(&p, "rich/web"), ["198.51.100.0"]);
    assert_eq!(reason(&p, "poor/web"), Some(PendingReason::NoMatchingPool));
}

#[test]
fn candidates_namespace_without_object_has_only_its_name_label() {
    let sel = |key: &str, value: &str| LabelSelector {
        match_labels: Labels::from([(key.into(), value.into())]),
        ..Default::default()
    };
    let p = plan(
        vec![
            decl("by-name", &["198.51.100.0/24"], |s| {
                s.namespace_selector = Some(sel(NAMESPACE_NAME_LABEL, "shop"))
            }),
            decl("by-team", &["203.0.113.0/24"], |s| {
                s.namespace_selector = Some(sel("team", "x"))
            }),
        ],
        vec![svc("shop/web"), svc("other/web")],
    );
    assert_eq!(ips(&p, "shop/web"), ["198.51.100.0"]);
    assert_eq!(reason(&p, "other/web"), Some(PendingReason::NoMatchingPool));
}

#[test]
fn candidates_service_selector_with_match_expressions() {
    let sel = LabelSelector {
        match_expressions: vec![Requirement::In(
            "app".into(),
            vec!["web".into(), "api".into()],
        )],
        ..Default::default()
    };
    let mut web = svc("a/web");
    web.labels.insert("app".into(), "web".into());
    let p = plan(
        vec![
            decl("apps", &["198.51.100.0/24"], |s| {
                s.service_selector = Some(sel)
            }),
            pool("rest", &["203.0.113.0/24"]),
        ],
        vec![web, svc("a/db")],
    );
    assert_eq!(ips(&p, "a/web"), ["198.51.100.0"]);
    assert_eq!(ips(&p, "a/db"), ["203.0.113.0"]);
}

#[test]
fn candidates_order_priority_first_lower_first_then_name() {
    let p = plan(
        vec![
            pool("a-nopriority", &["192.0.2.0/24"]),
            decl("z-prio-2", &["198.51.100.0/24"], |s| s.priority = Some(2)),
            decl("y-prio-1", &["203.0.113.0/24"], |s| s.priority = Some(1)),
        ],
        vec![svc("a/web")],
    );
    assert_eq!(ips(&p, "a/web"), ["203.0.113.0"]);
    let p = plan(
        vec![
            pool("b", &["198.51.100.0/24"]),
            pool("a", &["203.0.113.0/24"]),
        ],
        vec![svc("a/web")],
    );
    assert_eq!(ips(&p, "a/web"), ["203.0.113.0"], "ties by name");
}

#[test]
fn candidates_need_the_family() {
    let mut v6 = svc("a/v6");
    v6.families = vec![Family::IPv6];
    let p = plan(
        vec![
            pool("a", &["198.51.100.0/24"]),
            pool("b", &["2001:db8::/120"]),
        ],
        vec![v6],
    );
    assert_eq!(ips(&p, "a/v6"), ["2001:db8::"]);
}

// §4.4 Requests.

#[test]
fn request_pool_annotation_restricts_and_ignores_auto_assign() {
    let mut web = svc("a/web");
    web.pool = Some("manual".into());
    let p = plan(
        vec![
            pool("auto", &["198.51.100.0/24"]),
            decl("manual", &["203.0.113.0/24"], |s| s.auto_assign = false),
        ],
        vec![web],
    );
    assert_eq!(ips(&p, "a/web"), ["203.0.113.0"]);
    assert_eq!(outcome(&p, "a/web").pool.as_deref(), Some("manual"));
}

#[test]
fn request_pool_annotation_still_enforces_selectors() {
    let mut web = svc("a/web");
    web.pool = Some("team-b".into());
    let p = plan(
        vec![decl("team-b", &["203.0.113.0/24"], |s| {
            s.namespaces = vec!["b".into()]
        })],
        vec![web],
    );
    assert_eq!(reason(&p, "a/web"), Some(PendingReason::NoMatchingPool));
}

#[test]
fn request_ip_from_an_auto_assign_false_pool() {
    let p = plan(
        vec![decl("manual", &["203.0.113.0/24"], |s| {
            s.auto_assign = false
        })],
        vec![with_ips(svc("a/web"), "203.0.113.7")],
    );
    assert_eq!(ips(&p, "a/web"), ["203.0.113.7"]);
}

#[test]
fn request_ip_must_lie_in_a_pool_the_service_may_use() {
    let p = plan(
        vec![decl("b-only", &["203.0.113.0/24"], |s| {
            s.namespaces = vec!["b".into()]
        })],
        vec![
            with_ips(svc("a/web"), "203.0.113.7"),
            with_ips(svc("a/api"), "192.0.2.1"),
        ],
    );
    assert_eq!(
        reason(&p, "a/web"),
        Some(PendingReason::RequestedIpNotInPool)
    );
    assert_eq!(
        reason(&p, "a/api"),
        Some(PendingReason::RequestedIpNotInPool)
    );
}

#[test]
fn request_ip_excluded_by_avoid_buggy_ips_is_not_in_the_pool() {
    let p = plan(
        vec![decl("p", &["203.0.113.0/24"], |s| s.avoid_buggy_ips = true)],
        vec![with_ips(svc("a/web"), "203.0.113.255")],
    );
    assert_eq!(
        reason(&p, "a/web"),
        Some(PendingReason::RequestedIpNotInPool)
    );
}

#[test]
fn request_ips_in_two_pools_are_not_in_pool() {
    let p = plan(
        vec![
            pool("a", &["198.51.100.0/24"]),
            pool("b", &["2001:db8::/120"]),
        ],
        vec![with_ips(
            dual(svc("a/web"), FamilyPolicy::RequireDualStack),
            "198.51.100.1,2001:db8::1",
        )],
    );
    assert_eq!(
        reason(&p, "a/web"),
        Some(PendingReason::RequestedIpNotInPool)
    );
}

#[test]
fn request_ip_and_pool_annotation_must_agree() {
    let mut web = with_ips(svc("a/web"), "198.51.100.1");
    web.pool = Some("b".into());
    let p = plan(
        vec![
            pool("a", &["198.51.100.0/24"]),
            pool("b", &["203.0.113.0/24"]),
        ],
        vec![web],
    );
    assert_eq!(
        reason(&p, "a/web"),
        Some(PendingReason::RequestedIpNotInPool)
    );
}

#[test]
fn request_that_does_not_parse_is_invalid() {
    let mut web = svc("a/web");
    web.request = Request::Invalid("herald.dev/ips: \"x\" is not an IP address".into());
    let p = plan(vec![pool("a", &["198.51.100.0/24"])], vec![web]);
    assert_eq!(reason(&p, "a/web"), Some(PendingReason::InvalidRequest));
    assert!(outcome(&p, "a/web").ips.is_empty());
    assert_eq!(outcome(&p, "a/web").pool, None);
}

#[test]
fn request_two_addresses_of_one_family_is_invalid() {
    let p = plan(
        vec![pool("a", &["198.51.100.0/24"])],
        vec![with_ips(
            dual(svc("a/web"), FamilyPolicy::PreferDualStack),
            "198.51.100.1,198.51.100.2",
        )],
    );
    assert_eq!(reason(&p, "a/web"), Some(PendingReason::InvalidRequest));
}

#[test]
fn request_must_fit_the_family_policy() {
    let pools = || vec![pool("a", &["198.51.100.0/24", "2001:db8::/120"])];
    // SingleStack (IPv4 when ipFamilies is unset): exactly one IPv4 address.
    let p = plan(pools(), vec![with_ips(svc("a/v6"), "2001:db8::1")]);
    assert_eq!(reason(&p, "a/v6"), Some(PendingReason::InvalidRequest));
    let p = plan(
        pools(),
        vec![with_ips(svc("a/two"), "198.51.100.1,2001:db8::1")],
    );
    assert_eq!(reason(&p, "a/two"), Some(PendingReason::InvalidRequest));
    // RequireDualStack: one of each.
    let p = plan(
        pools(),
        vec![with_ips(
            dual(svc("a/req"), FamilyPolicy::RequireDualStack),
            "198.51.100.1",
        )],
    );
    assert_eq!(reason(&p, "a/req"), Some(PendingReason::InvalidRequest));
    // PreferDualStack: what is requested, exactly.
    let p = plan(
        pools(),
        vec![with_ips(
            dual(svc("a/pref"), FamilyPolicy::PreferDualStack),
            "2001:db8::9",
        )],
    );
    assert_eq!(ips(&p, "a/pref"), ["2001:db8::9"]);
}

#[test]
fn request_ip_in_use_by_an_incompatible_service() {
    let p = plan(
        vec![pool("a", &["198.51.100.0/24"])],
        vec![
            aged(with_ips(svc("a/first"), "198.51.100.5"), 1),
            aged(with_ips(svc("a/second"), "198.51.100.5"), 2),
        ],
    );
    assert_eq!(ips(&p, "a/first"), ["198.51.100.5"]);
    assert_eq!(
        reason(&p, "a/second"),
        Some(PendingReason::RequestedIpInUse)
    );
    assert!(
        outcome(&p, "a/second")
            .pending
            .as_ref()
            .unwrap()
            .message
            .contains("a/first")
    );
}

#[test]
fn request_ip_shared_by_key() {
    let p = plan(
        vec![pool("a", &["198.51.100.0/24"])],
        vec![
            shared(with_ips(svc("a/http"), "198.51.100.5"), "k", &[80]),
            shared(with_ips(svc("a/dns"), "198.51.100.5"), "k", &[53]),
        ],
    );
    assert_eq!(ips(&p, "a/http"), ["198.51.100.5"]);
    assert_eq!(ips(&p, "a/dns"), ["198.51.100.5"]);
    assert_eq!(p.pools[0].allocated, 1);
}

// §4.5 Families.

#[test]
fn family_single_stack_defaults_to_ipv4() {
    let p = plan(
        vec![pool("a", &["2001:db8::/120", "198.51.100.0/24"])],
        vec![svc("a/web")],
    );
    assert_eq!(ips(&p, "a/web"), ["198.51.100.0"]);
}

#[test]
fn family_single_stack_uses_the_first_listed_family() {
    let mut web = svc("a/web");
    web.families = vec![Family::IPv6, Family::IPv4];
    let p = plan(
        vec![pool("a", &["2001:db8::/120", "198.51.100.0/24"])],
        vec![web],
    );
    assert_eq!(ips(&p, "a/web"), ["2001:db8::"]);
}

#[test]
fn family_prefer_dual_stack_gets_both_from_one_pool_in_family_order() {
    let mut web = dual(svc("a/web"), FamilyPolicy::PreferDualStack);
    web.families = vec![Family::IPv6, Family::IPv4];
    let p = plan(
        vec![
            pool("a-v4", &["192.0.2.0/24"]),
            pool("b-dual", &["198.51.100.0/24", "2001:db8::/120"]),
        ],
        vec![web],
    );
    assert_eq!(ips(&p, "a/web"), ["2001:db8::", "198.51.100.0"]);
    assert_eq!(outcome(&p, "a/web").pool.as_deref(), Some("b-dual"));
}

#[test]
fn family_prefer_dual_stack_falls_back_to_one_address() {
    let p = plan(
        vec![
            pool("v4", &["198.51.100.0/24"]),
            pool("v6", &["2001:db8::/120"]),
        ],
        vec![dual(svc("a/web"), FamilyPolicy::PreferDualStack)],
    );
    assert_eq!(
        ips(&p, "a/web"),
        ["198.51.100.0"],
        "one pool for all addresses"
    );
}

#[test]
fn family_prefer_dual_stack_stays_with_the_pools_that_have_a_priority() {
    // An IPv4-only pool with a priority outranks a dual-stack pool without
    // one: the Service gets one address from the first, as MetalLB gives
    // it from a restricted pool.
    let pools = |v4_priority: Option<i32>| {
        vec![
            decl("restricted-v4", &["192.0.2.0/24"], |s| {
                s.priority = v4_priority
            }),
            pool("open-dual", &["198.51.100.0/24", "2001:db8::/120"]),
        ]
    };
    let web = || dual(svc("a/web"), FamilyPolicy::PreferDualStack);
    let p = plan(pools(Some(1)), vec![web()]);
    assert_eq!(ips(&p, "a/web"), ["192.0.2.0"]);
    assert_eq!(outcome(&p, "a/web").pool.as_deref(), Some("restricted-v4"));
    // Among pools alike (none with a priority), one with both families wins.
    let p = plan(pools(None), vec![web()]);
    assert_eq!(ips(&p, "a/web"), ["198.51.100.0", "2001:db8::"]);
    // Among pools with a priority too, even a later one.
    let p = plan(
        vec![
            decl("a-v4", &["192.0.2.0/24"], |s| s.priority = Some(1)),
            decl("b-dual", &["198.51.100.0/24", "2001:db8::/120"], |s| {
                s.priority = Some(2)
            }),
        ],
        vec![web()],
    );
    assert_eq!(outcome(&p, "a/web").pool.as_deref(), Some("b-dual"));
    // A full prioritized pool hands over to the others.
    let p = plan(
        vec![
            decl("restricted-v4", &["192.0.2.1/32"], |s| s.priority = Some(1)),
            pool("open-dual", &["198.51.100.0/24", "2001:db8::/120"]),
        ],
        vec![
            aged(web(), 2),
            aged(dual(svc("a/first"), FamilyPolicy::SingleStack), 1),
        ],
    );
    assert_eq!(ips(&p, "a/first"), ["192.0.2.1"]);
    assert_eq!(ips(&p, "a/web"), ["198.51.100.0", "2001:db8::"]);
}

#[test]
fn family_require_dual_stack_needs_one_pool_with_both() {
    let p = plan(
        vec![
            pool("v4", &["198.51.100.0/24"]),
            pool("v6", &["2001:db8::/120"]),
        ],
        vec![dual(svc("a/web"), FamilyPolicy::RequireDualStack)],
    );
    assert_eq!(
        reason(&p, "a/web"),
        Some(PendingReason::DualStackUnavailable)
    );
    let p = plan(
        vec![pool("dual", &["198.51.100.0/24", "2001:db8::/120"])],
        vec![dual(svc("a/web"), FamilyPolicy::RequireDualStack)],
    );
    assert_eq!(ips(&p, "a/web"), ["198.51.100.0", "2001:db8::"]);
}

#[test]
fn family_require_dual_stack_pool_exhausted_in_one_family() {
    let p = plan(
        vec![pool("dual", &["198.51.100.0/32", "2001:db8::/120"])],
        vec![
            aged(svc("a/first"), 1),
            aged(dual(svc("a/second"), FamilyPolicy::RequireDualStack), 2),
        ],
    );
    assert_eq!(reason(&p, "a/second"), Some(PendingReason::PoolExhausted));
    assert!(
        outcome(&p, "a/second").ips.is_empty(),
        "nothing held while Pending"
    );
    assert_eq!(p.pools[0].allocated, 1);
}

// §4.5 Families as the cluster has them (docs/allocation.md, "Families"):
// `ipFamilies` lists the families the Service has cluster IPs of, and it
// gets addresses of those only. Cases after MetalLB's, which takes the
// families from `spec.clusterIPs`.

fn families(policy: FamilyPolicy, families: &[Family]) -> Service {
    let mut s = dual(svc("a/web"), policy);
    s.families = families.to_vec();
    s
}

fn dual_stack_pool() -> Vec<PoolDecl> {
    vec![pool("dual", &["198.51.100.0/24", "2001:db8::/120"])]
}

#[test]
fn family_prefer_dual_stack_listing_ipv4_gets_one_ipv4_address() {
    // A PreferDualStack Service on a single-stack IPv4 cluster.
    let p = plan(
        dual_stack_pool(),
        vec![families(FamilyPolicy::PreferDualStack, &[Family::IPv4])],
    );
    assert_eq!(ips(&p, "a/web"), ["198.51.100.0"]);
    assert_eq!(p.pools[0].allocated, 1);
}

#[test]
fn family_prefer_dual_stack_listing_ipv6_gets_one_ipv6_address() {
    let p = plan(
        dual_stack_pool(),
        vec![families(FamilyPolicy::PreferDualStack, &[Family::IPv6])],
    );
    assert_eq!(ips(&p, "a/web"), ["2001:db8::"]);
}

#[test]
fn family_prefer_dual_stack_listing_both_gets_both_in_the_listed_order() {
    let p = plan(
        dual_stack_pool(),
        vec![families(
            FamilyPolicy::PreferDualStack,
            &[Family::IPv4, Family::IPv6],
        )],
    );
    assert_eq!(ips(&p, "a/web"), ["198.51.100.0", "2001:db8::"]);
    let p = plan(
        dual_stack_pool(),
        vec![families(
            FamilyPolicy::PreferDualStack,
            &[Family::IPv6, Family::IPv4],
        )],
    );
    assert_eq!(ips(&p, "a/web"), ["2001:db8::", "198.51.100.0"]);
}

#[test]
fn family_prefer_dual_stack_without_a_list_gets_both_ipv4_first() {
    // A manifest from git: the API server of a dual-stack cluster fills in
    // [IPv4, IPv6].
    let p = plan(
        dual_stack_pool(),
        vec![families(FamilyPolicy::PreferDualStack, &[])],
    );
    assert_eq!(ips(&p, "a/web"), ["198.51.100.0", "2001:db8::"]);
}

#[test]
fn family_prefer_dual_stack_listing_one_family_never_falls_back_to_the_other() {
    let p = plan(
        vec![pool("v4", &["198.51.100.0/24"])],
        vec![families(FamilyPolicy::PreferDualStack, &[Family::IPv6])],
    );
    assert_eq!(reason(&p, "a/web"), Some(PendingReason::NoMatchingPool));
    let message = &outcome(&p, "a/web").pending.as_ref().unwrap().message;
    assert!(message.ends_with("with IPv6 addresses"), "{message}");
    // The one IPv6 address is taken: Pending, not an IPv4 address instead.
    let mut late = dual(svc("a/late"), FamilyPolicy::PreferDualStack);
    late.families = vec![Family::IPv6];
    let p = plan(
        vec![
            pool("v6", &["2001:db8::/128"]),
            pool("v4", &["198.51.100.0/24"]),
        ],
        vec![
            aged(families(FamilyPolicy::SingleStack, &[Family::IPv6]), 1),
            aged(late, 2),
        ],
    );
    assert_eq!(reason(&p, "a/late"), Some(PendingReason::PoolExhausted));
}

#[test]
fn family_require_dual_stack_listing_one_family_is_invalid() {
    // No API server stores this: it fills in the second family, or refuses
    // the Service on a single-stack cluster.
    for listed in Family::ALL {
        let p = plan(
            dual_stack_pool(),
            vec![families(FamilyPolicy::RequireDualStack, &[listed])],
        );
        assert_eq!(reason(&p, "a/web"), Some(PendingReason::InvalidRequest));
        let message = &outcome(&p, "a/web").pending.as_ref().unwrap().message;
        assert!(
            message.contains(&format!("lists only {listed}")),
            "{message}"
        );
        assert_eq!(p.pools[0].allocated, 0, "holds nothing");
    }
}

#[test]
fn family_require_dual_stack_listing_one_family_drops_a_held_pair() {
    let mut web = families(FamilyPolicy::RequireDualStack, &[Family::IPv4]);
    web.status_ips = vec![ip("198.51.100.9"), ip("2001:db8::9")];
    let p = plan(dual_stack_pool(), vec![web]);
    assert_eq!(reason(&p, "a/web"), Some(PendingReason::InvalidRequest));
    assert_eq!(p.pools[0].allocated, 0);
}

#[test]
fn family_single_stack_listing_ipv6_gets_ipv6() {
    let p = plan(
        dual_stack_pool(),
        vec![families(FamilyPolicy::SingleStack, &[Family::IPv6])],
    );
    assert_eq!(ips(&p, "a/web"), ["2001:db8::"]);
}

#[test]
fn family_prefer_dual_stack_listing_one_family_drops_a_held_address_of_the_other() {
    // Held from before the rule (or from MetalLB): the IPv6 address has no
    // IPv6 cluster IP behind it, so it is released; the IPv4 one stays.
    let mut web = families(FamilyPolicy::PreferDualStack, &[Family::IPv4]);
    web.status_ips = vec![ip("198.51.100.9"), ip("2001:db8::9")];
    let p = plan(dual_stack_pool(), vec![web]);
    assert_eq!(ips(&p, "a/web"), ["198.51.100.9"]);
    assert_eq!(p.pools[0].allocated, 1);
}

#[test]
fn family_prefer_dual_stack_listing_one_family_is_not_topped_up() {
    let mut web = families(FamilyPolicy::PreferDualStack, &[Family::IPv6]);
    web.status_ips = vec![ip("2001:db8::9")];
    let p = plan(dual_stack_pool(), vec![web]);
    assert_eq!(ips(&p, "a/web"), ["2001:db8::9"]);
}

#[test]
fn family_request_must_be_of_the_listed_families() {
    let requesting = |listed: &[Family], request: &str| {
        with_ips(families(FamilyPolicy::PreferDualStack, listed), request)
    };
    let p = plan(
        dual_stack_pool(),
        vec![requesting(&[Family::IPv4], "198.51.100.1,2001:db8::1")],
    );
    assert_eq!(reason(&p, "a/web"), Some(PendingReason::InvalidRequest));
    let message = &outcome(&p, "a/web").pending.as_ref().unwrap().message;
    assert!(message.contains("2001:db8::1 is IPv6"), "{message}");
    let p = plan(
        dual_stack_pool(),
        vec![requesting(&[Family::IPv4], "2001:db8::1")],
    );
    assert_eq!(reason(&p, "a/web"), Some(PendingReason::InvalidRequest));
    let p = plan(
        dual_stack_pool(),
        vec![requesting(&[Family::IPv4], "198.51.100.1")],
    );
    assert_eq!(ips(&p, "a/web"), ["198.51.100.1"]);
}

#[test]
fn family_added_service_gets_only_its_listed_families() {
    // The controller's path: one more Service after a full allocation.
    let snapshot = Snapshot {
        pools: dual_stack_pool(),
        ..Default::default()
    };
    let config = Config::default();
    let mut alloc = Allocator::new(&snapshot, &config, &BUILT_IN);
    let web = families(FamilyPolicy::PreferDualStack, &[Family::IPv6]);
    let outcome = alloc.add(&web, &config).unwrap();
    assert_eq!(outcome.ips, [ip("2001:db8::")]);
}

// §4.6 Choice and sharing.

#[test]
fn choice_lowest_free_address_of_the_first_pool_that_can_serve() {
    let p = plan(
        vec![
            decl("a", &["198.51.100.10/32"], |s| s.priority = Some(1)),
            pool("b", &["203.0.113.0/24"]),
        ],
        vec![
            aged(svc("a/one"), 1),
            aged(svc("a/two"), 2),
            aged(svc("a/three"), 3),
        ],
    );
    assert_eq!(ips(&p, "a/one"), ["198.51.100.10"]);
    assert_eq!(ips(&p, "a/two"), ["203.0.113.0"]);
    assert_eq!(ips(&p, "a/three"), ["203.0.113.1"]);
}

#[test]
fn sharing_joins_a_compatible_address() {
    let p = plan(
        vec![pool("a", &["198.51.100.0/24"])],
        vec![
            aged(shared(svc("a/http"), "k", &[80]), 1),
            aged(shared(svc("a/https"), "k", &[443]), 2),
            aged(svc("a/other"), 3),
        ],
    );
    assert_eq!(ips(&p, "a/http"), ["198.51.100.0"]);
    assert_eq!(ips(&p, "a/https"), ["198.51.100.0"]);
    assert_eq!(ips(&p, "a/other"), ["198.51.100.1"]);
}

#[test]
fn sharing_port_clash_gets_a_fresh_address() {
    let p = plan(
        vec![pool("a", &["198.51.100.0/24"])],
        vec![
            aged(shared(svc("a/one"), "k", &[80]), 1),
            aged(shared(svc("a/two"), "k", &[80]), 2),
        ],
    );
    assert_eq!(ips(&p, "a/two"), ["198.51.100.1"]);
    // Same port, other protocol: no clash.
    let mut udp = shared(svc("a/udp"), "k", &[80]);
    udp.ports[0].protocol = "UDP".into();
    let p = plan(
        vec![pool("a", &["198.51.100.0/24"])],
        vec![aged(shared(svc("a/one"), "k", &[80]), 1), aged(udp, 2)],
    );
    assert_eq!(ips(&p, "a/udp"), ["198.51.100.0"]);
}

#[test]
fn sharing_skips_addresses_that_all_hold_a_port_and_still_joins_the_lowest_free_of_it() {
    let p = plan(
        vec![pool("a", &["198.51.100.0/24"])],
        vec![
            aged(shared(svc("a/one"), "k", &[80]), 1),
            aged(shared(svc("a/two"), "k", &[80]), 2),
            aged(shared(svc("a/three"), "k", &[80, 443]), 3),
            aged(shared(svc("a/four"), "k", &[443]), 4),
            aged(shared(svc("a/five"), "k", &[80]), 5),
            aged(shared(svc("a/six"), "k", &[443, 8443]), 6),
        ],
    );
    // Every address holds 80: a/two, a/three and a/five get fresh ones.
    assert_eq!(ips(&p, "a/two"), ["198.51.100.1"]);
    assert_eq!(ips(&p, "a/three"), ["198.51.100.2"]);
    assert_eq!(ips(&p, "a/five"), ["198.51.100.3"]);
    // Not every address holds 443: the lowest that does not is joined.
    assert_eq!(ips(&p, "a/four"), ["198.51.100.0"]);
    assert_eq!(ips(&p, "a/six"), ["198.51.100.1"]);
}

#[test]
fn sharing_needs_the_same_key() {
    let p = plan(
        vec![pool("a", &["198.51.100.0/24"])],
        vec![
            aged(shared(svc("a/one"), "k1", &[80]), 1),
            aged(shared(svc("a/two"), "k2", &[443]), 2),
        ],
    );
    assert_eq!(ips(&p, "a/two"), ["198.51.100.1"]);
}

#[test]
fn sharing_local_needs_local_everywhere_with_identical_selectors() {
    let local = |id: &str, app: &str, port: u16| {
        let mut s = shared(svc(id), "k", &[port]);
        s.traffic_policy = TrafficPolicy::Local;
        s.selector = Labels::from([("app".into(), app.into())]);
        s
    };
    let p = plan(
        vec![pool("a", &["198.51.100.0/24"])],
        vec![
            aged(local("a/one", "web", 80), 1),
            aged(local("a/same", "web", 443), 2),
            aged(local("a/other-selector", "api", 8080), 3),
            aged(shared(svc("a/cluster"), "k", &[9090]), 4),
        ],
    );
    assert_eq!(ips(&p, "a/same"), ["198.51.100.0"]);
    assert_eq!(ips(&p, "a/other-selector"), ["198.51.100.1"]);
    // The cluster one may not join a Local address; it joins nobody's.
    assert_eq!(ips(&p, "a/cluster"), ["198.51.100.2"]);
}

#[test]
fn sharing_compatibility_is_checked_against_every_holder() {
    let p = plan(
        vec![pool("a", &["198.51.100.0/24"])],
        vec![
            aged(shared(svc("a/one"), "k", &[80]), 1),
            aged(shared(svc("a/two"), "k", &[443]), 2),
            aged(shared(svc("a/three"), "k", &[443, 8443]), 3),
        ],
    );
    assert_eq!(ips(&p, "a/two"), ["198.51.100.0"]);
    assert_eq!(ips(&p, "a/three"), ["198.51.100.1"]);
}

#[test]
fn sharing_joinable_addresses_come_before_free_ones_across_pools() {
    let mut first = shared(svc("a/first"), "k", &[80]);
    first.pool = Some("b".into());
    let p = plan(
        vec![
            decl("a", &["198.51.100.0/24"], |s| s.priority = Some(1)),
            pool("b", &["203.0.113.0/24"]),
        ],
        vec![
            aged(first, 1),
            aged(shared(svc("a/second"), "k", &[443]), 2),
        ],
    );
    assert_eq!(ips(&p, "a/first"), ["203.0.113.0"]);
    assert_eq!(ips(&p, "a/second"), ["203.0.113.0"]);
}

// §4.7 Stability and order.

#[test]
fn stability_held_addresses_are_kept() {
    let pools = || vec![pool("a", &["198.51.100.0/24"])];
    let first = plan(pools(), vec![aged(svc("a/one"), 5)]);
    // An older Service appears; the held address does not move.
    let second = replan(
        &first,
        pools(),
        vec![aged(svc("a/one"), 5), aged(svc("a/zero"), 1)],
    );
    assert_eq!(ips(&second, "a/one"), ["198.51.100.0"]);
    assert_eq!(ips(&second, "a/zero"), ["198.51.100.1"]);
}

#[test]
fn stability_status_counts_when_no_ipallocation_records_the_service() {
    let mut web = svc("a/web");
    web.status_ips = vec![ip("198.51.100.9")];
    let p = plan(vec![pool("a", &["198.51.100.0/24"])], vec![web]);
    assert_eq!(ips(&p, "a/web"), ["198.51.100.9"]);
}

#[test]
fn stability_ipallocation_records_beat_status() {
    let mut stale = aged(svc("a/stale"), 1);
    stale.status_ips = vec![ip("198.51.100.9")];
    let owner = aged(svc("a/owner"), 2);
    let snapshot = Snapshot {
        pools: vec![pool("a", &["198.51.100.0/24"])],
        services: vec![stale, owner],
        allocations: vec![Held {
            address: ip("198.51.100.9"),
            pool: "a".into(),
            services: vec![ServiceRef::new("a", "owner")],
        }],
        ..Default::default()
    };
    let p = allocate(&snapshot, &Config::default());
    assert_eq!(ips(&p, "a/owner"), ["198.51.100.9"]);
    assert_eq!(ips(&p, "a/stale"), ["198.51.100.0"]);
}

#[test]
fn stability_on_conflict_the_older_service_keeps_the_address() {
    let mut young = aged(svc("a/young"), 2);
    young.status_ips = vec![ip("198.51.100.9")];
    let mut old = aged(svc("b/old"), 1);
    old.status_ips = vec![ip("198.51.100.9")];
    let p = plan(vec![pool("a", &["198.51.100.0/24"])], vec![young, old]);
    assert_eq!(ips(&p, "b/old"), ["198.51.100.9"]);
    assert_eq!(
        ips(&p, "a/young"),
        ["198.51.100.0"],
        "allocated like any other, not Pending"
    );
}

#[test]
fn stability_invalid_held_address_is_dropped_and_reallocated() {
    let mut web = svc("a/web");
    web.status_ips = vec![ip("192.0.2.1")]; // in no pool
    let p = plan(vec![pool("a", &["198.51.100.0/24"])], vec![web]);
    assert_eq!(ips(&p, "a/web"), ["198.51.100.0"]);
    // A held address in a pool the Service may no longer use.
    let mut web = svc("a/web");
    web.status_ips = vec![ip("198.51.100.7")];
    let p = plan(
        vec![
            decl("a", &["198.51.100.0/24"], |s| {
                s.namespaces = vec!["b".into()]
            }),
            pool("c", &["203.0.113.0/24"]),
        ],
        vec![web],
    );
    assert_eq!(ips(&p, "a/web"), ["203.0.113.0"]);
}

#[test]
fn stability_changed_request_moves_the_address() {
    let mut web = with_ips(svc("a/web"), "198.51.100.20");
    web.status_ips = vec![ip("198.51.100.9")];
    let p = plan(vec![pool("a", &["198.51.100.0/24"])], vec![web]);
    assert_eq!(ips(&p, "a/web"), ["198.51.100.20"]);
    assert_eq!(p.pools[0].allocated, 1);
}

#[test]
fn stability_prefer_dual_stack_gains_the_missing_family_in_its_pool() {
    let mut web = dual(svc("a/web"), FamilyPolicy::PreferDualStack);
    web.status_ips = vec![ip("198.51.100.9")];
    let p = plan(
        vec![pool("a", &["198.51.100.0/24", "2001:db8::/120"])],
        vec![web],
    );
    assert_eq!(ips(&p, "a/web"), ["198.51.100.9", "2001:db8::"]);
}

#[test]
fn stability_single_stack_drops_a_held_address_of_the_other_family() {
    let mut web = svc("a/web");
    web.status_ips = vec![ip("2001:db8::5"), ip("198.51.100.9")];
    let p = plan(
        vec![pool("a", &["198.51.100.0/24", "2001:db8::/120"])],
        vec![web],
    );
    assert_eq!(ips(&p, "a/web"), ["198.51.100.9"]);
}

#[test]
fn order_requests_are_served_before_the_rest() {
    let p = plan(
        vec![pool("a", &["198.51.100.0/31"])],
        vec![
            aged(svc("a/old"), 1),
            aged(with_ips(svc("a/new"), "198.51.100.0"), 2),
        ],
    );
    assert_eq!(ips(&p, "a/new"), ["198.51.100.0"]);
    assert_eq!(ips(&p, "a/old"), ["198.51.100.1"]);
}

#[test]
fn order_by_creation_time_then_namespace_and_name() {
    let p = plan(
        vec![pool("a", &["198.51.100.0/24"])],
        vec![
            svc("b/undated"),
            svc("a/undated"),
            aged(svc("z/new"), 20),
            aged(svc("z/old"), 10),
        ],
    );
    assert_eq!(ips(&p, "z/old"), ["198.51.100.0"]);
    assert_eq!(ips(&p, "z/new"), ["198.51.100.1"]);
    assert_eq!(ips(&p, "a/undated"), ["198.51.100.2"]);
    assert_eq!(ips(&p, "b/undated"), ["198.51.100.3"]);
    let names: Vec<String> = p.services.iter().map(|o| o.service.to_string()).collect();
    assert_eq!(
        names,
        ["a/undated", "b/undated", "z/new", "z/old"],
        "output by namespace/name"
    );
}

#[test]
fn order_unrelated_pool_edit_moves_nothing() {
    let first = plan(
        vec![pool("b", &["203.0.113.0/24"])],
        vec![svc("a/one"), svc("a/two")],
    );
    let second = replan(
        &first,
        vec![
            decl("a-new", &["198.51.100.0/24"], |s| s.priority = Some(0)),
            pool("b", &["203.0.113.0/24"]),
        ],
        vec![svc("a/one"), svc("a/two")],
    );
    assert_eq!(first.services, second.services);
}

// §4.8 Pending reasons.

#[test]
fn pending_no_matching_pool() {
    let p = plan(vec![], vec![svc("a/web")]);
    assert_eq!(reason(&p, "a/web"), Some(PendingReason::NoMatchingPool));
    let mut named = svc("a/named");
    named.pool = Some("missing".into());
    let p = plan(vec![pool("a", &["198.51.100.0/24"])], vec![named]);
    assert_eq!(reason(&p, "a/named"), Some(PendingReason::NoMatchingPool));
    assert!(
        outcome(&p, "a/named")
            .pending
            .as_ref()
            .unwrap()
            .message
            .contains("missing")
    );
}

#[test]
fn pending_pool_exhausted() {
    let p = plan(
        vec![pool("a", &["198.51.100.0/32"])],
        vec![aged(svc("a/one"), 1), aged(svc("a/two"), 2)],
    );
    assert_eq!(reason(&p, "a/two"), Some(PendingReason::PoolExhausted));
    assert_eq!(outcome(&p, "a/two").pool, None);
}

#[test]
fn pending_reason_names_serialize_as_designed() {
    let names: Vec<String> = [
        PendingReason::NoMatchingPool,
        PendingReason::PoolExhausted,
        PendingReason::RequestedIpNotInPool,
        PendingReason::RequestedIpInUse,
        PendingReason::DualStackUnavailable,
        PendingReason::InvalidRequest,
    ]
    .iter()
    .map(|r| r.to_string())
    .collect();
    assert_eq!(
        names,
        [
            "NoMatchingPool",
            "PoolExhausted",
            "RequestedIPNotInPool",
            "RequestedIPInUse",
            "DualStackUnavailable",
            "InvalidRequest"
        ]
    );
}

// Everything else.

#[test]
fn duplicate_service_definitions_are_reported_once() {
    let p = plan(
        vec![pool("a", &["198.51.100.0/24"])],
        vec![svc("a/web"), svc("a/web")],
    );
    assert_eq!(p.services.len(), 1);
    assert_eq!(p.errors[0].kind, "Service");
}

#[test]
fn large_pool_capacity_is_exact() {
    let p = plan(vec![pool("big", &["2001:db8::/64"])], vec![]);
    assert_eq!(p.pools[0].capacity, 1u128 << 64);
}

#[test]
fn stability_require_dual_stack_keeps_held_addresses_only_as_a_pair() {
    let mut first = with_ips(svc("a/first"), "198.51.100.1");
    first.created = Some(1);
    let mut half = aged(dual(svc("b/half"), FamilyPolicy::RequireDualStack), 2);
    half.status_ips = vec![ip("198.51.100.1")];
    // The half-held address is dropped, so the older request gets it, and
    // the Service is allocated like any other (here: no IPv6 anywhere).
    let p = plan(vec![pool("a", &["198.51.100.0/29"])], vec![first, half]);
    assert_eq!(ips(&p, "a/first"), ["198.51.100.1"]);
    assert_eq!(
        reason(&p, "b/half"),
        Some(PendingReason::DualStackUnavailable)
    );
}

#[test]
fn stability_request_keeps_held_addresses_only_when_they_are_all_it_asks_for() {
    let mut web = with_ips(
        dual(svc("a/web"), FamilyPolicy::PreferDualStack),
        "198.51.100.1,2001:db8::1",
    );
    web.status_ips = vec![ip("198.51.100.1")];
    let p = plan(
        vec![pool("a", &["198.51.100.0/29", "2001:db8::/120"])],
        vec![web],
    );
    assert_eq!(ips(&p, "a/web"), ["198.51.100.1", "2001:db8::1"]);
}

// Allocator plugins (the policy hook).

mod plugins {
    use super::*;
    use crate::plugin::FailurePolicy;
    use crate::policy::{AllocatorPolicy, Plugin, Policies, PolicyError, PoolView};

    /// Chooses the second free address, or answers with what it is given.
    enum Test {
        SecondFree,
        Answer(&'static str),
        Trap,
    }

    impl AllocatorPolicy for Test {
        fn choose(&self, _: &Service, pool: &dyn PoolView) -> Result<Option<IpAddr>, PolicyError> {
            match self {
                Test::SecondFree => Ok(pool.next_free_after(pool.next_free_after(None))),
                Test::Answer(ip) => Ok(Some(ip.parse().unwrap())),
                Test::Trap => Err(PolicyError {
                    plugin: "p".into(),
                    message: "wasm trap: unreachable".into(),
                }),
            }
        }
    }

    fn run(policy: &Test, failure_policy: FailurePolicy) -> Plan {
        let mut policies = Policies::default();
        policies.allocators.insert(
            "p".into(),
            Plugin {
                policy: policy as &dyn AllocatorPolicy,
                failure_policy,
            },
        );
        let snapshot = Snapshot {
            pools: vec![decl("a", &["198.51.100.0/24"], |s| {
                s.allocator_plugin = Some("p".into())
            })],
            services: vec![svc("a/web")],
            ..Default::default()
        };
        Allocator::new(&snapshot, &Config::default(), &policies).into_plan()
    }

    #[test]
    fn plugin_chooses_the_fresh_address_and_is_named() {
        let p = run(&Test::SecondFree, FailurePolicy::Fallback);
        assert_eq!(ips(&p, "a/web"), ["198.51.100.1"]);
        assert_eq!(outcome(&p, "a/web").plugin.as_deref(), Some("p"));
        assert!(p.errors.is_empty());
    }

    #[test]
    fn plugin_answer_that_is_not_free_is_a_failure() {
        let p = run(&Test::Answer("192.0.2.1"), FailurePolicy::Fallback);
        assert_eq!(
            ips(&p, "a/web"),
            ["198.51.100.0"],
            "fell back to the built-in policy"
        );
        assert_eq!(outcome(&p, "a/web").plugin, None);
        assert_eq!(p.errors[0].kind, "PolicyPlugin");
        assert!(p.errors[0].message.contains("192.0.2.1"), "{:?}", p.errors);
    }

    #[test]
    fn plugin_failure_with_fail_policy_serves_nothing_from_the_pool() {
        let p = run(&Test::Trap, FailurePolicy::Fail);
        assert_eq!(reason(&p, "a/web"), Some(PendingReason::PoolExhausted));
        assert!(p.errors[0].message.contains("trap"), "{:?}", p.errors);
        let p = run(&Test::Trap, FailurePolicy::Fallback);
        assert_eq!(ips(&p, "a/web"), ["198.51.100.0"]);
        assert_eq!(p.errors.len(), 1, "reported once: {:?}", p.errors);
    }

    #[test]
    fn plugin_that_is_not_loaded_leaves_the_decision_built_in() {
        let p = plan(
            vec![decl("a", &["198.51.100.0/24"], |s| {
                s.allocator_plugin = Some("missing".into())
            })],
            vec![svc("a/web")],
        );
        assert_eq!(ips(&p, "a/web"), ["198.51.100.0"]);
        assert_eq!(p.errors[0].kind, "IPPool");
        assert!(p.errors[0].message.contains("missing"));
    }
}

#[test]
fn held_addresses_stay_in_a_pool_that_does_not_assign_automatically() {
    // autoAssign: false stops new addresses, not held ones (a Service that
    // MetalLB gave an address from such a pool keeps it on the switch).
    let manual = || decl("manual", &["192.0.2.0/28"], |s| s.auto_assign = false);
    let mut web = svc("a/web");
    web.status_ips = vec![ip("192.0.2.5")];
    let p = plan(
        vec![manual(), pool("open", &["198.51.100.0/24"])],
        vec![web.clone()],
    );
    assert_eq!(ips(&p, "a/web"), ["192.0.2.5"]);
    // A Service that names another pool leaves it.
    web.pool = Some("open".into());
    let p = plan(
        vec![manual(), pool("open", &["198.51.100.0/24"])],
        vec![web],
    );
    assert_eq!(ips(&p, "a/web"), ["198.51.100.0"]);
    // New Services still never get one.
    let p = plan(vec![manual()], vec![svc("a/new")]);
    assert_eq!(reason(&p, "a/new"), Some(PendingReason::NoMatchingPool));
}
