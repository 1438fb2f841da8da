//! `herald controller` under faults (issue 10's Faults acceptance point),
//! each test on a control plane of its own (tests/control-plane), so that
//! it can kill its API server or compact its etcd:
//!
//! - kube-apiserver SIGKILLed while Services are being created, and
//!   restarted on the same etcd: the controller reconnects and finishes;
//! - every connection of the controller ended every two seconds for the
//!   whole test (a [`Relay`] in front of the API server): no change is
//!   missed, quiet kinds (a new IPPool) included;
//! - the controller cut off, changes made meanwhile, etcd compacted: the
//!   watch's resume is answered 410 Gone (shown in the controller's log),
//!   the watcher lists again and neither change is lost;
//! - another client overwriting Service statuses, and racing the
//!   controller on one (its stale updates answered 409): the controller
//!   restores every allocation and rewrites no record.
//!
//! What each test checks, beside its own point: every Service ends with
//! exactly one address, shown in its status with the condition True and
//! recorded in the IPAllocation named after it, which names that Service
//! only; no record is left without its Service; and (sampled throughout)
//! no address is shown by two Services at once, and an address a Service
//! showed never changes.
//!
//! The controller is the built `herald` binary, run as a child process
//! that is killed when the test ends (its log is shown on failure). The
//! tests run one at a time (`herald_control_plane::herald::serial`): each starts an etcd, an API
//! server and a controller, and a two-core machine runs one such set well.
//! Addresses are in 198.51.100.0/24; the cluster's ClusterIPs are
//! 203.0.113.0/24.
//!
//! Needs go, openssl and setpriv (scripts/test.sh; the control plane is
//! built once per machine by scripts/control-plane-build.sh).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use herald_control_plane::herald::Controller;
use herald_control_plane::herald::serial;
use herald_control_plane::{ControlPlane, Relay};
use herald_netns::wait_for;
use serde_json::Value;

/// The built `herald` binary.
const HERALD: &str = env!("CARGO_BIN_EXE_herald");

/// How long the cluster may take to show what the controller decided after
/// a fault ends (the controller's write retries and the watchers' backoff
/// both stay under this).
const SETTLE: Duration = Duration::from_secs(30);
/// How often the tests look while waiting, and the sampler samples.
const POLL: Duration = Duration::from_millis(200);
/// How long kube-apiserver stays down in the kill test.
const DOWN: Duration = Duration::from_secs(3);
/// How often the relay ends every connection in the watch-ending test.
const ENDING: Duration = Duration::from_secs(2);
/// How long a change may take to show in the watch-ending test: a watch
/// that ended is resumed at once, so a change is seen within a second or so
/// (a watcher left backing off would take up to 30 s).
const CHANGE_BOUND: Duration = Duration::from_secs(10);

/// A test's own control plane with Herald's CRDs and one namespace.
struct Cluster {
    cp: ControlPlane,
    namespace: &'static str,
}

impl Cluster {
    fn start(apiserver_flags: &[&str], namespace: &'static str) -> Cluster {
        let cp = ControlPlane::start_with(apiserver_flags).unwrap_or_else(|e| panic!("{e}"));
        cp.install_crds(env!("CARGO_BIN_EXE_herald"))
            .unwrap_or_else(|e| panic!("{e}"));
        cp.kubectl(&["create", "namespace", namespace])
            .unwrap_or_else(|e| panic!("{e}"));
        Cluster { cp, namespace }
    }

    fn apply(&self, yaml: &str) -> Result<(), String> {
        self.cp
            .kubectl_with_input(&["apply", "-f", "-"], Some(yaml))
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn pool(&self, name: &str, addresses: &str) {
        self.apply(&format!(
            "apiVersion: herald.dev/v1alpha1\nkind: IPPool\nmetadata: {{name: {name}}}\nspec:\n  addresses: [\"{addresses}\"]\n"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    }

    fn service_yaml(&self, name: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  type: LoadBalancer\n  ports: [{{port: 80}}]\n",
            ns = self.namespace
        )
    }

    fn service(&self, name: &str) {
        self.apply(&self.service_yaml(name))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    fn delete_service(&self, name: &str) {
        self.cp
            .kubectl(&["delete", "service", "-n", self.namespace, name])
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// The namespace's Services by name (`None`: the API server did not
    /// answer).
    fn services(&self) -> Option<BTreeMap<String, Value>> {
        let out = self
            .cp
            .kubectl(&["get", "services", "-n", self.namespace, "-o", "json"])
            .ok()?;
        let list: Value = serde_json::from_slice(&out.stdout).ok()?;
        Some(
            list["items"]
                .as_array()?
                .iter()
                .map(|s| {
                    (
                        s["metadata"]["name"].as_str().unwrap().to_owned(),
                        s.clone(),
                    )
                })
                .collect(),
        )
    }

    /// Every IPAllocation by name.
    fn records(&self) -> Option<BTreeMap<String, Value>> {
        let out = self
            .cp
            .kubectl(&["get", "ipallocations", "-o", "json"])
            .ok()?;
        let list: Value = serde_json::from_slice(&out.stdout).ok()?;
        Some(
            list["items"]
                .as_array()?
                .iter()
                .map(|r| {
                    (
                        r["metadata"]["name"].as_str().unwrap().to_owned(),
                        r.clone(),
                    )
                })
                .collect(),
        )
    }

    /// The addresses of exactly the Services `names`, when the cluster
    /// shows the controller finished: each has one address with the
    /// condition True, and the records are exactly those addresses, each
    /// naming its one Service.
    fn settled(&self, names: &[&str]) -> Option<BTreeMap<String, String>> {
        let services = self.services()?;
        let mut addresses = BTreeMap::new();
        for name in names {
            let svc = services.get(*name)?;
            let ips = ingress(svc);
            if ips.len() != 1 || allocated(svc) != Some(true) {
                return None;
            }
            addresses.insert((*name).to_owned(), ips[0].clone());
        }
        let records = self.records()?;
        let recorded: BTreeMap<String, Vec<String>> = records
            .values()
            .map(|r| {
                let address = r["spec"]["address"].as_str().unwrap_or_default();
                let holders = r["spec"]["services"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| format!("{}/{}", s["namespace"], s["name"]).replace('"', ""))
                    .collect();
                (address.to_owned(), holders)
            })
            .collect();
        let wanted: BTreeMap<String, Vec<String>> = addresses
            .iter()
            .map(|(name, ip)| (ip.clone(), vec![format!("{}/{name}", self.namespace)]))
            .collect();
        (recorded == wanted).then_some(addresses)
    }

    /// Waits until [`Cluster::settled`], failing with what the cluster
    /// shows and the controller's log.
    fn wait_settled(&self, controller: &Controller, names: &[&str]) -> BTreeMap<String, String> {
        wait_for("the cluster to settle", SETTLE, POLL, || {
            self.settled(names)
        })
        .unwrap_or_else(|e| {
            let services: BTreeMap<String, Vec<String>> = self
                .services()
                .unwrap_or_default()
                .iter()
                .map(|(n, s)| (n.clone(), ingress(s)))
                .collect();
            let records: Vec<String> = self
                .records()
                .unwrap_or_default()
                .values()
                .map(|r| r["spec"].to_string())
                .collect();
            panic!(
                "{e}\nservices: {services:?}\nrecords: {records:#?}\n--- controller log ---\n{}",
                controller.log()
            )
        })
    }
}

/// The addresses of a Service's `status.loadBalancer.ingress`.
fn ingress(svc: &Value) -> Vec<String> {
    svc["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str().map(str::to_owned))
        .collect()
}

/// Whether Herald's condition is True (`None`: no condition).
fn allocated(svc: &Value) -> Option<bool> {
    let c = svc["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "herald.dev/Allocated")?;
    Some(c["status"] == "True")
}

/// Sets its flag when dropped, a test's panic included: the threads the
/// flag stops must end for `std::thread::scope` to return.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Samples the namespace's Service statuses until `stop`, and returns what
/// broke the invariants: an address shown by two Services at once, or a
/// Service whose shown address changed. Samples the API server could not
/// answer (it is down) are skipped.
fn sample(cluster: &Cluster, stop: &AtomicBool) -> Vec<String> {
    let mut first: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut broken = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        if let Some(services) = cluster.services() {
            let mut holder: BTreeMap<String, &str> = BTreeMap::new();
            for (name, svc) in &services {
                let ips = ingress(svc);
                for ip in &ips {
                    if let Some(other) = holder.insert(ip.clone(), name) {
                        broken.push(format!("{ip} shown by {other} and {name}"));
                    }
                }
                if ips.is_empty() {
                    continue;
                }
                let was = first.entry(name.clone()).or_insert_with(|| ips.clone());
                if *was != ips {
                    broken.push(format!("{name} showed {was:?}, then {ips:?}"));
                }
            }
        }
        std::thread::sleep(POLL);
    }
    broken
}

#[test]
fn the_controller_finishes_after_the_api_server_is_killed_mid_stream() {
    let _serial = serial();
    let cluster = Cluster::start(&[], "faults-kill");
    cluster.pool("kill", "198.51.100.0/26");
    let controller = Controller::start(HERALD, &cluster.cp.kubeconfig());
    let names: Vec<String> = (0..40).map(|i| format!("s{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let stop = AtomicBool::new(false);
    let created = AtomicUsize::new(0);

    let (broken, created_at_kill) = std::thread::scope(|s| {
        let _stop = SetOnDrop(&stop);
        let sampler = s.spawn(|| sample(&cluster, &stop));
        // Creates the Services one by one, each tried again until the API
        // server takes it (it is down for a while).
        let creator = s.spawn(|| {
            for name in &names {
                let yaml = cluster.service_yaml(name);
                wait_for(&format!("{name} to be created"), SETTLE, POLL, || {
                    cluster.apply(&yaml).ok()
                })
                .unwrap_or_else(|e| panic!("{e}"));
                created.fetch_add(1, Ordering::SeqCst);
            }
        });
        controller.wait("ten Services with an address", || {
            let shown = cluster.services()?;
            (shown.values().filter(|s| !ingress(s).is_empty()).count() >= 10).then_some(())
        });
        cluster
            .cp
            .kill_apiserver()
            .unwrap_or_else(|e| panic!("{e}"));
        let created_at_kill = created.load(Ordering::SeqCst);
        // The fault itself: the API server is down this long.
        std::thread::sleep(DOWN);
        cluster
            .cp
            .restart_apiserver()
            .unwrap_or_else(|e| panic!("{e}"));
        creator.join().expect("the creator");
        cluster.wait_settled(&controller, &names);
        stop.store(true, Ordering::SeqCst);
        (sampler.join().expect("the sampler"), created_at_kill)
    });

    assert!(
        created_at_kill < names.len(),
        "the API server was killed after every Service was created: not mid-stream"
    );
    assert!(broken.is_empty(), "{broken:#?}");
    let log = controller.log();
    assert!(
        log.contains("cannot reach the API server"),
        "the controller never lost the API server:\n{log}"
    );
    // Only this controller writes records: one it found "taken" was its
    // own, and tripping over it held up every write behind it.
    assert!(
        !log.contains("taken meanwhile"),
        "the controller took its own record for someone else's:\n{log}"
    );
}

#[test]
fn watches_ending_every_few_seconds_miss_no_change() {
    let _serial = serial();
    let cluster = Cluster::start(&[], "faults-watch");
    let relay = Relay::start(cluster.cp.address()).unwrap_or_else(|e| panic!("{e}"));
    let kubeconfig = cluster
        .cp
        .kubeconfig_via(&relay)
        .unwrap_or_else(|e| panic!("{e}"));
    cluster.pool("first", "198.51.100.64/29");
    let controller = Controller::start(HERALD, &kubeconfig);
    let names: Vec<String> = (0..12).map(|i| format!("s{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let stop = AtomicBool::new(false);
    let rounds = AtomicUsize::new(0);

    let (broken, slowest) = std::thread::scope(|s| {
        let _stop = SetOnDrop(&stop);
        let sampler = s.spawn(|| sample(&cluster, &stop));
        s.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(ENDING);
                relay.end_connections();
                rounds.fetch_add(1, Ordering::SeqCst);
            }
        });
        // Each change waits for the relay's next round, then 0 to ¾ of a
        // round more, so that changes fall at every point of a watch's
        // short life (and of the watchers' backoff).
        let mut step = 0;
        let mut pace = || {
            let round = rounds.load(Ordering::SeqCst);
            wait_for("the relay's next round", 3 * ENDING, POLL, || {
                (rounds.load(Ordering::SeqCst) > round).then_some(())
            })
            .unwrap_or_else(|e| panic!("{e}"));
            std::thread::sleep(ENDING * (step % 4) / 4);
            step += 1;
        };
        let mut slowest = Duration::ZERO;
        // What a Service shows within SETTLE: its condition True or False.
        let mut outcome = |name: &str, since: Instant| {
            let allocated = controller.wait(&format!("{name}'s condition"), || {
                allocated(cluster.services()?.get(name)?)
            });
            slowest = slowest.max(since.elapsed());
            allocated
        };
        for (i, name) in names.iter().enumerate() {
            pace();
            let since = Instant::now();
            cluster.service(name);
            // Eight addresses: the last four wait.
            assert_eq!(outcome(name, since), i < 8, "{name}");
        }
        // The released addresses go to the waiting Services.
        for (gone, waiting) in [("s00", "s08"), ("s01", "s09")] {
            pace();
            let since = Instant::now();
            cluster.delete_service(gone);
            wait_for(
                &format!("{waiting} to get {gone}'s address"),
                SETTLE,
                POLL,
                || outcome(waiting, since).then_some(()),
            )
            .unwrap_or_else(|e| panic!("{e}\n--- controller log ---\n{}", controller.log()));
        }
        // A change of a quiet kind: a second pool for the last two.
        pace();
        let since = Instant::now();
        cluster.pool("second", "198.51.100.72/30");
        for name in ["s10", "s11"] {
            wait_for(
                &format!("{name} to get an address of the new pool"),
                SETTLE,
                POLL,
                || outcome(name, since).then_some(()),
            )
            .unwrap_or_else(|e| panic!("{e}\n--- controller log ---\n{}", controller.log()));
        }
        let addresses = cluster.wait_settled(&controller, &names[2..]);
        stop.store(true, Ordering::SeqCst);
        for name in ["s10", "s11"] {
            assert!(
                addresses[name].starts_with("198.51.100.7"),
                "{name}: {addresses:?}"
            );
        }
        (sampler.join().expect("the sampler"), slowest)
    });

    assert!(broken.is_empty(), "{broken:#?}");
    assert!(
        slowest < CHANGE_BOUND,
        "a change took {slowest:?} to show\n--- controller log ---\n{}",
        controller.log()
    );
    // kube-client logs each watch that ends mid-stream as an "eof in
    // poll"; five watches were open most of each round.
    let rounds = rounds.load(Ordering::SeqCst);
    let ended = controller.log().matches("eof in poll").count();
    assert!(
        ended >= 3 * rounds,
        "{ended} watches ended in {rounds} rounds: the relay did not end them"
    );
}

#[test]
fn a_compaction_that_expires_the_watch_loses_no_change() {
    let _serial = serial();
    // Watches served by etcd itself, so that a compaction expires them.
    let cluster = Cluster::start(&["--watch-cache=false"], "faults-gone");
    let relay = Relay::start(cluster.cp.address()).unwrap_or_else(|e| panic!("{e}"));
    let kubeconfig = cluster
        .cp
        .kubeconfig_via(&relay)
        .unwrap_or_else(|e| panic!("{e}"));
    cluster.pool("gone", "198.51.100.80/29");
    let controller = Controller::start(HERALD, &kubeconfig);
    cluster.service("a");
    cluster.service("b");
    let before = cluster.wait_settled(&controller, &["a", "b"]);

    relay.cut();
    controller.wait("the controller's watch of Services to break", || {
        let log = controller.log();
        log.lines()
            .any(|l| l.contains("WARN herald_k8s::reflect") && l.contains(r#"resource="services""#))
            .then_some(())
    });
    // Across the gap: one Service goes, one comes, and the history of both
    // changes is compacted away.
    cluster.delete_service("a");
    cluster.service("c");
    let revision = cluster.cp.compact_etcd().unwrap_or_else(|e| panic!("{e}"));
    relay.restore();

    let after = cluster.wait_settled(&controller, &["b", "c"]);
    assert_eq!(after["b"], before["b"], "b's address moved");
    let log = controller.log();
    assert!(
        log.lines()
            .any(|l| l.contains(r#"resource="services""#) && l.contains("410")),
        "no watch of Services was answered 410 Gone after compacting at revision {revision}: the test proves nothing\n{log}"
    );
}

#[test]
fn statuses_overwritten_by_another_client_are_restored() {
    let _serial = serial();
    let cluster = Cluster::start(&[], "faults-status");
    cluster.pool("status", "198.51.100.96/29");
    let controller = Controller::start(HERALD, &cluster.cp.kubeconfig());
    let names = ["a", "b", "c", "d"];
    for name in names {
        cluster.service(name);
    }
    let before = cluster.wait_settled(&controller, &names);
    let versions = |records: BTreeMap<String, Value>| -> BTreeSet<String> {
        records
            .values()
            .map(|r| r["metadata"]["resourceVersion"].to_string())
            .collect()
    };
    let records_before = versions(cluster.records().unwrap());

    let patch = |name: &str, kind: &str, body: String| {
        cluster
            .cp
            .kubectl(&[
                "patch",
                "service",
                "-n",
                cluster.namespace,
                name,
                "--subresource=status",
                &format!("--type={kind}"),
                "-p",
                &body,
            ])
            .unwrap_or_else(|e| panic!("{e}"));
    };
    // a's address cleared, b shown with c's, c's condition removed.
    patch(
        "a",
        "merge",
        r#"{"status":{"loadBalancer":{"ingress":[]}}}"#.to_owned(),
    );
    patch(
        "b",
        "merge",
        format!(
            r#"{{"status":{{"loadBalancer":{{"ingress":[{{"ip":"{}"}}]}}}}}}"#,
            before["c"]
        ),
    );
    patch(
        "c",
        "json",
        r#"[{"op":"remove","path":"/status/conditions"}]"#.to_owned(),
    );

    // d: another client's optimistic read-modify-write of its status, each
    // update carrying the resourceVersion of its last answer. After each of
    // its writes the controller restores d, so the next one is stale and
    // answered 409 Conflict; read again, it wins, and so on.
    let restored = |what: &str| {
        controller.wait(what, || {
            let d = cluster.services()?.remove("d")?;
            (ingress(&d) == [before["d"].clone()]).then_some(d)
        })
    };
    let mut d = restored("d's address");
    let (mut won, mut conflicts) = (0, 0);
    while won < 3 {
        d["status"]["loadBalancer"]["ingress"] = serde_json::json!([{"ip": "192.0.2.1"}]);
        match cluster.cp.kubectl_with_input(
            &["replace", "--subresource=status", "-o", "json", "-f", "-"],
            Some(&d.to_string()),
        ) {
            Ok(out) => {
                won += 1;
                d = serde_json::from_slice(&out.stdout).unwrap();
                restored(&format!("d's address after the other client's write {won}"));
            }
            Err(e) if e.to_string().contains("Conflict") => {
                conflicts += 1;
                d = restored("d's address");
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        conflicts >= 2,
        "the other client's stale updates were never refused ({conflicts} conflicts): no race"
    );

    let after = cluster.wait_settled(&controller, &names);
    assert_eq!(after, before, "an address moved");
    assert_eq!(
        versions(cluster.records().unwrap()),
        records_before,
        "a record was rewritten"
    );
}
