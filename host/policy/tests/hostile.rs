//! Hostile plugins (plugins/hostile, built by ./scripts/build-plugins.sh)
//! are contained: the host keeps running, the call ends within its timeout
//! plus 10 ms, memory stays bounded, the failure policy is applied, and
//! the failure is reported with the plugin's name.

mod fixtures;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fixtures::{candidates, nodes, spec, wasm};
use herald_core::Config;
use herald_core::announce::{AnnounceInput, announce};
use herald_core::l2::L2Advertisement;
use herald_core::node::{Endpoints, Node};
use herald_core::plugin::{FailurePolicy, MAX_TIMEOUT_MS, World};
use herald_core::policy::{AnnounceQuery, AnnouncerPolicy, Mode, Plugin, Policies};
use herald_core::pool::{PoolDecl, PoolSpec};
use herald_core::selector::LabelSelector;
use herald_core::service::Service;
use herald_policy::{Host, Loaded};

/// The slack the issue allows beyond the plugin's own time limit.
const SLACK: Duration = Duration::from_millis(10);

/// Held by each test: the timing checks measure one call at a time, not
/// six plugins fighting over two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn load(host: &Host, fixture: &str, failure_policy: FailurePolicy) -> Loaded {
    let bytes = wasm(&format!("hostile-{fixture}"));
    let mut s = spec(World::Announcer, fixture, &bytes, "{}");
    s.failure_policy = failure_policy;
    host.load(fixture, &s, &bytes)
        .unwrap_or_else(|e| panic!("{fixture}: {e}"))
}

fn query<'a>(svc: &'a Service, ns: &'a [Node]) -> AnnounceQuery<'a> {
    AnnounceQuery {
        vip: "198.51.100.7".parse().unwrap(),
        mode: Mode::L2,
        services: vec![svc],
        eligible: candidates(ns, |_| 1),
    }
}

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Calls the plugin directly: it must fail, quickly, naming itself.
fn contained(host: &Host, fixture: &str, want: &str) -> String {
    let plugin = load(host, fixture, FailurePolicy::Fallback);
    let ns = nodes(3, 1);
    let svc = Service::new("shop", "web");
    let q = query(&svc, &ns);
    let limit = Duration::from_millis(u64::from(herald_core::plugin::DEFAULT_TIMEOUT_MS)) + SLACK;
    let mut took = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let e = plugin.announce(&q).expect_err(fixture);
        took.push(start.elapsed());
        assert_eq!(e.plugin, fixture);
        assert!(e.message.contains(want), "{fixture}: {e}");
        // Never anywhere near unbounded, even on a loaded machine.
        assert!(took[took.len() - 1] < limit * 4, "{fixture}: {took:?}");
    }
    // The median of three calls, so one descheduling of the epoch ticker
    // by a busy machine does not decide the test.
    took.sort();
    assert!(
        took[1] < limit,
        "{fixture}: calls took {took:?}; the median is over {limit:?}"
    );
    plugin.announce(&q).unwrap_err().message
}

#[test]
fn infinite_loop_is_stopped_at_its_deadline() {
    let _serial = serial();
    let host = Host::new().unwrap();
    let m = contained(&host, "infinite-loop", "ran out of time");
    assert!(m.contains("timeoutMs"), "{m}");
}

#[test]
fn memory_bomb_hits_its_limit_and_memory_stays_bounded() {
    let _serial = serial();
    let host = Host::new().unwrap();
    let before = rss_kib();
    contained(&host, "memory-bomb", "");
    // With time to spare only the memory limit can stop it (on a loaded
    // machine, filling 16 MiB may take longer than the default deadline).
    let bytes = wasm("hostile-memory-bomb");
    let mut s = spec(World::Announcer, "memory-bomb", &bytes, "{}");
    s.timeout_ms = MAX_TIMEOUT_MS;
    let plugin = host.load("memory-bomb", &s, &bytes).unwrap();
    let ns = nodes(3, 1);
    let svc = Service::new("shop", "web");
    for _ in 0..20 {
        let e = plugin.announce(&query(&svc, &ns)).unwrap_err();
        assert!(e.message.contains("memory"), "{e}");
    }
    // 23 bombs of 16 MiB each: freed after every call (a fresh Store).
    let grown = rss_kib().saturating_sub(before);
    assert!(grown < 64 * 1024, "resident memory grew by {grown} KiB");
}

#[test]
fn panic_is_a_trap_reported_with_its_message() {
    let _serial = serial();
    let host = Host::new().unwrap();
    let m = contained(&host, "trap", "trapped");
    assert!(m.contains("hostile plugin panics on purpose"), "{m}");
}

#[test]
fn unknown_node_is_an_invalid_answer() {
    let _serial = serial();
    let host = Host::new().unwrap();
    let m = contained(&host, "unknown-node", "no-such-node");
    assert!(m.contains("not one of the 3 eligible nodes"), "{m}");
}

/// An answer naming 100,000 nodes (about 11 MB as the host's values) is
/// refused by the size guard, when wasmtime reads its list length and
/// before the host copies any of it. Time and memory are generous, so the
/// plugin does finish its answer: only the guard can stop it (without it,
/// the answer would be copied whole and refused afterwards by its count).
#[test]
fn huge_output_is_refused_by_its_size_before_it_is_copied() {
    let _serial = serial();
    let host = Host::new().unwrap();
    let bytes = wasm("hostile-huge-output");
    let mut s = spec(World::Announcer, "huge-output", &bytes, "{}");
    // Building the answer takes about 15 MiB and some milliseconds.
    s.timeout_ms = MAX_TIMEOUT_MS;
    s.memory_limit_mib = 256;
    let plugin = host.load("huge-output", &s, &bytes).unwrap();
    let ns = nodes(3, 1);
    let svc = Service::new("shop", "web");
    for _ in 0..3 {
        let e = plugin.announce(&query(&svc, &ns)).unwrap_err();
        assert_eq!(e.plugin, "huge-output");
        assert!(
            e.message
                .starts_with("sent more data than the host accepts from one call: "),
            "{e}"
        );
        assert!(e.message.len() < 2048, "the report is bounded: {e}");
    }
}

/// Through the core's `announce`: Fallback decides with the built-in
/// policy, Fail announces nothing; both report the plugin by name.
#[test]
fn failure_policy_is_applied_and_the_host_keeps_running() {
    let _serial = serial();
    let host = Host::new().unwrap();
    let pools = vec![PoolDecl {
        name: "public".into(),
        created: None,
        spec: Ok(PoolSpec::new(vec!["198.51.100.0/24".parse().unwrap()])),
    }];
    let mut svc = Service::new("shop", "web");
    svc.status_ips = vec!["198.51.100.7".parse().unwrap()];
    let services = vec![svc];
    let ns = nodes(3, 1);
    let alive: BTreeSet<String> = ns.iter().map(|n| n.name.clone()).collect();
    let endpoints = Endpoints::new();
    let l2 = vec![L2Advertisement {
        name: "segment".into(),
        ip_pools: vec![],
        node_selector: LabelSelector::default(),
        interfaces: vec![],
        announcer_plugin: Some("loop".into()),
    }];
    let input = AnnounceInput {
        pools: &pools,
        services: &services,
        nodes: &ns,
        alive: &alive,
        endpoints: &endpoints,
        peers: &[],
        bgp: &[],
        l2: &l2,
    };
    let built_in = announce(&input, &Config::default(), &Policies::default());
    assert_eq!(built_in.l2.len(), 1);

    for fixture in ["infinite-loop", "trap", "unknown-node", "memory-bomb"] {
        for policy in [FailurePolicy::Fallback, FailurePolicy::Fail] {
            let plugin = load(&host, fixture, policy);
            let mut policies = Policies::default();
            policies.announcers.insert(
                "loop".to_owned(),
                Plugin {
                    policy: &plugin as &dyn AnnouncerPolicy,
                    failure_policy: policy,
                },
            );
            let out = announce(&input, &Config::default(), &policies);
            let errors: BTreeMap<&str, &str> = out
                .errors
                .iter()
                .map(|e| (e.name.as_str(), e.message.as_str()))
                .collect();
            assert_eq!(out.errors.len(), 1, "{fixture}: {:?}", out.errors);
            assert_eq!(out.errors[0].kind, "PolicyPlugin");
            assert!(errors.contains_key("loop"), "{fixture}: {errors:?}");
            match policy {
                FailurePolicy::Fallback => assert_eq!(out.l2, built_in.l2, "{fixture}"),
                FailurePolicy::Fail => assert!(out.l2.is_empty(), "{fixture}"),
            }
        }
    }
    // And the host still serves a well-behaved plugin afterwards.
    let good = wasm("zone-spread");
    let zs = host
        .load("zs", &spec(World::Announcer, "zs", &good, "{}"), &good)
        .unwrap();
    let svc = Service::new("shop", "web");
    assert_eq!(zs.announce(&query(&svc, &ns)).unwrap().len(), 1);
}
