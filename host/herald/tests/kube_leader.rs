//! Two `herald controller` replicas on a real kube-apiserver
//! (tests/control-plane), electing a leader on a Lease: racing over 500
//! Services created at once, one replica acts and no address is given
//! twice (checked on the `IPAllocation`s and the statuses); a SIGKILLed
//! leader mid-stream hands over within the lease duration plus a small
//! bound and no address already in a status changes; a leader stopped with
//! SIGTERM releases the Lease and its standby takes over well within the
//! lease duration; a missing permission on Leases, or a missing Lease
//! namespace, is one line naming the fix.
//!
//! Replicas are the built `herald` binary, run as child processes killed
//! by PID when a test ends (their logs are shown on failure). Tests take
//! `herald_control_plane::herald::serial` (a leader serves the whole cluster); each has its own
//! namespace, Lease (in that namespace) and pool, which admits only that
//! namespace. Services are IPv6 single-stack (the cluster is dual-stack):
//! 500 Services need more ClusterIPs than its IPv4 range, 203.0.113.0/24,
//! has (its IPv6 range is 2001:db8:ffff::/112). Pools: 2001:db8:c::/119
//! (512 addresses) for the 500, 2001:db8:a::/120 and 2001:db8:b::/120 for
//! the others.
//!
//! Needs go, openssl and setpriv (scripts/test.sh; the control plane is
//! built once per machine by scripts/control-plane-build.sh).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use herald_control_plane::ControlPlane;
use herald_control_plane::herald::serial;
use herald_netns::{TempDir, wait_for};
use serde_json::Value;

/// The lease duration the tests give replicas (`--lease-duration`): short,
/// so a SIGKILLed leader's term runs out soon.
const LEASE_SECONDS: u64 = 4;
/// What a handover after SIGKILL may take beyond the lease duration: the
/// crate's random pause (at most 1 s) and a few round trips on a loaded
/// machine.
const HANDOVER_SLACK: Duration = Duration::from_secs(3);
/// How long 500 Services may take to all show an address.
const ALL_ALLOCATED: Duration = Duration::from_secs(180);
/// How long a replica may take to fill its stores or take a free Lease.
const SETTLE: Duration = Duration::from_secs(30);
/// How often kubectl looks while waiting.
const POLL: Duration = Duration::from_millis(100);

/// A running `herald controller` replica, killed by PID on drop.
struct Replica {
    identity: String,
    child: Child,
    log: PathBuf,
    _dir: TempDir,
}

impl Replica {
    /// Starts a replica named `identity` with `kubeconfig` on the Lease
    /// `lease` in `namespace`, with `--lease-duration seconds`.
    fn start(
        kubeconfig: &Path,
        identity: &str,
        namespace: &str,
        lease: &str,
        seconds: u64,
    ) -> Self {
        let dir = TempDir::new("hlead").unwrap();
        let log = dir.path().join("controller.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg("controller")
            .env("KUBECONFIG", kubeconfig)
            .env("HERALD_LOG", "info")
            .env("POD_NAME", identity)
            .env("POD_NAMESPACE", namespace)
            .env("HERALD_LEASE_NAME", lease)
            .env("HERALD_LEASE_DURATION", seconds.to_string())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start herald controller");
        Replica {
            identity: identity.to_owned(),
            child,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether this replica wrote anything.
    fn acted(&self) -> bool {
        self.log().contains("writing the difference")
    }

    /// Sends `signal` (`KILL`, `TERM`) to this replica's PID.
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {}", self.child.id());
    }

    /// Waits for the replica to exit, failing after `bound`.
    fn exit(&mut self, bound: Duration) -> ExitStatus {
        wait_for(&format!("{} to exit", self.identity), bound, POLL, || {
            self.child.try_wait().ok().flatten()
        })
        .unwrap_or_else(|e| panic!("{e}\n--- {} ---\n{}", self.identity, self.log()))
    }

    /// Waits until the replica's stores are filled (a warm standby).
    fn wait_ready(&self) {
        wait_for(
            &format!("{} to fill its stores", self.identity),
            SETTLE,
            POLL,
            || self.log().contains("stores filled").then_some(()),
        )
        .unwrap_or_else(|e| panic!("{e}\n--- {} ---\n{}", self.identity, self.log()));
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} log ---\n{}", self.identity, self.log());
        }
    }
}

/// A test's namespace and pool, deleted when the test ends.
struct Scope {
    cp: &'static ControlPlane,
    namespace: String,
    lease: String,
}

impl Scope {
    /// A namespace, a Lease name for it, and one IPPool of `addresses`
    /// named after the namespace that serves it alone.
    fn new(namespace: &str, addresses: &[&str]) -> Scope {
        let cp = herald_control_plane::with_crds(env!("CARGO_BIN_EXE_herald"));
        cp.kubectl(&["create", "namespace", namespace])
            .unwrap_or_else(|e| panic!("{e}"));
        let pool = serde_json::json!({
            "apiVersion": "herald.dev/v1alpha1",
            "kind": "IPPool",
            "metadata": {"name": namespace},
            "spec": {"addresses": addresses, "allocation": {"namespaces": [namespace]}},
        });
        let scope = Scope {
            cp,
            namespace: namespace.to_owned(),
            lease: format!("{namespace}-lease"),
        };
        scope.create(&pool.to_string());
        scope
    }

    fn create(&self, json: &str) {
        self.cp
            .kubectl_with_input(&["create", "-f", "-"], Some(json))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    fn replica(&self, identity: &str, seconds: u64) -> Replica {
        Replica::start(
            &self.cp.kubeconfig(),
            identity,
            &self.namespace,
            &self.lease,
            seconds,
        )
    }

    /// `{prefix}-a`, leading once its stores are filled, then `{prefix}-b`,
    /// standing by with its stores filled.
    fn leader_and_standby(&self, prefix: &str, seconds: u64) -> (Replica, Replica) {
        let first = self.replica(&format!("{prefix}-a"), seconds);
        first.wait_ready();
        self.wait_holder(&first.identity, SETTLE, &[&first]);
        let second = self.replica(&format!("{prefix}-b"), seconds);
        second.wait_ready();
        (first, second)
    }

    /// A List of IPv6 single-stack Services `{prefix}-{i}`, `i` in `range`.
    fn services(&self, prefix: &str, range: std::ops::Range<usize>) -> String {
        let items: Vec<Value> = range
            .map(|i| {
                serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": format!("{prefix}-{i}"), "namespace": self.namespace},
                    "spec": {
                        "type": "LoadBalancer",
                        "ipFamilyPolicy": "SingleStack",
                        "ipFamilies": ["IPv6"],
                        "ports": [{"port": 80}],
                    },
                })
            })
            .collect();
        serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
    }

    /// Every Service of the namespace with its ingress addresses.
    fn addresses(&self) -> BTreeMap<String, Vec<String>> {
        let out = self
            .cp
            .kubectl(&["get", "services", "-n", &self.namespace, "-o", "json"])
            .unwrap_or_else(|e| panic!("{e}"));
        let list: Value = serde_json::from_slice(&out.stdout).unwrap();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|svc| {
                let ips = svc["status"]["loadBalancer"]["ingress"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|i| i["ip"].as_str().map(str::to_owned))
                    .collect();
                (svc["metadata"]["name"].as_str().unwrap().to_owned(), ips)
            })
            .collect()
    }

    /// Waits until all `count` Services show an address, at most `bound`.
    fn all_allocated(
        &self,
        count: usize,
        bound: Duration,
        replicas: &[&Replica],
    ) -> BTreeMap<String, Vec<String>> {
        wait_for(
            &format!(
                "all {count} Services of {} to show an address",
                self.namespace
            ),
            bound,
            Duration::from_millis(500),
            || {
                let now = self.addresses();
                (now.len() == count && now.values().all(|ips| !ips.is_empty())).then_some(now)
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(replicas)))
    }

    /// The `IPAllocation`s of this test's pool: address → the Services
    /// (`namespace/name`) each names.
    fn records(&self) -> BTreeMap<String, Vec<String>> {
        let out = self
            .cp
            .kubectl(&["get", "ipallocations", "-o", "json"])
            .unwrap_or_else(|e| panic!("{e}"));
        let list: Value = serde_json::from_slice(&out.stdout).unwrap();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["spec"]["pool"] == self.namespace.as_str())
            .map(|r| {
                let services = r["spec"]["services"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| {
                        format!(
                            "{}/{}",
                            s["namespace"].as_str().unwrap(),
                            s["name"].as_str().unwrap()
                        )
                    })
                    .collect();
                (r["spec"]["address"].as_str().unwrap().to_owned(), services)
            })
            .collect()
    }

    /// The Lease's `holderIdentity` (empty when free or missing).
    fn holder(&self) -> String {
        self.cp
            .kubectl(&[
                "get",
                "lease",
                "-n",
                &self.namespace,
                &self.lease,
                "-o",
                "jsonpath={.spec.holderIdentity}",
                "--ignore-not-found",
            ])
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .unwrap_or_default()
    }

    /// Waits until `identity` holds the Lease, at most `bound`; returns how
    /// long that took.
    fn wait_holder(&self, identity: &str, bound: Duration, replicas: &[&Replica]) -> Duration {
        let start = Instant::now();
        wait_for(
            &format!("{identity} to hold the Lease"),
            bound,
            POLL,
            || (self.holder() == identity).then_some(()),
        )
        .unwrap_or_else(|e| panic!("{e} (holder: {:?})\n{}", self.holder(), logs(replicas)));
        start.elapsed()
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let _ = self
            .cp
            .kubectl(&["delete", "namespace", &self.namespace, "--wait=false"]);
        let _ = self
            .cp
            .kubectl(&["delete", "ippool", &self.namespace, "--wait=false"]);
    }
}

/// The replicas' logs, for failure messages.
fn logs(replicas: &[&Replica]) -> String {
    replicas
        .iter()
        .map(|r| format!("--- {} ---\n{}", r.identity, r.log()))
        .collect()
}

/// Checks that no address is shown by two Services, and that each shown
/// address has a record naming exactly its Service.
fn each_address_once(scope: &Scope, shown: &BTreeMap<String, Vec<String>>) {
    let mut holders: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, ips) in shown {
        for ip in ips {
            holders.entry(ip).or_default().push(name);
        }
    }
    let twice: Vec<_> = holders
        .iter()
        .filter(|(_, names)| names.len() > 1)
        .collect();
    assert!(
        twice.is_empty(),
        "addresses shown by two Services: {twice:?}"
    );
    let records = scope.records();
    for (ip, names) in &holders {
        let want = vec![format!("{}/{}", scope.namespace, names[0])];
        assert_eq!(records.get(*ip), Some(&want), "the record of {ip}");
    }
    assert_eq!(
        records.len(),
        holders.len(),
        "records without a Service showing their address: {:?}",
        records
            .keys()
            .filter(|ip| !holders.contains_key(ip.as_str()))
            .collect::<Vec<_>>()
    );
}

/// Checks a handover: every address `before` showed is shown still, each
/// address once, and the successor wrote.
fn handed_over(
    scope: &Scope,
    before: &BTreeMap<String, Vec<String>>,
    after: &BTreeMap<String, Vec<String>>,
    successor: &Replica,
) {
    for (name, ips) in before.iter().filter(|(_, ips)| !ips.is_empty()) {
        assert_eq!(
            after.get(name),
            Some(ips),
            "{name}'s address changed on handover"
        );
    }
    each_address_once(scope, after);
    assert!(
        successor.acted(),
        "the successor wrote nothing\n{}",
        logs(&[successor])
    );
}

#[test]
fn two_replicas_racing_over_500_services_give_each_address_once_and_one_acts() {
    let _serial = serial();
    let scope = Scope::new("lead-race", &["2001:db8:c::/119"]);
    // Started together, they race for the Lease too.
    let a = scope.replica("race-a", LEASE_SECONDS);
    let b = scope.replica("race-b", LEASE_SECONDS);
    a.wait_ready();
    b.wait_ready();
    wait_for("a holder of the Lease", SETTLE, POLL, || {
        let holder = scope.holder();
        (!holder.is_empty()).then_some(holder)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&[&a, &b])));

    let start = Instant::now();
    scope.create(&scope.services("svc", 0..500));
    let created = start.elapsed();
    let shown = scope.all_allocated(500, ALL_ALLOCATED, &[&a, &b]);
    eprintln!(
        "500 Services: created in {created:?}, all with an address after {:?}",
        start.elapsed()
    );
    each_address_once(&scope, &shown);

    let holder = scope.holder();
    let (leader, standby) = if holder == a.identity {
        (&a, &b)
    } else {
        (&b, &a)
    };
    assert_eq!(leader.identity, holder, "the Lease names a replica");
    assert!(
        leader.acted(),
        "the holder wrote nothing\n{}",
        logs(&[&a, &b])
    );
    assert!(
        !standby.acted(),
        "the standby wrote too\n{}",
        logs(&[&a, &b])
    );
}

#[test]
fn a_leader_killed_mid_stream_hands_over_and_no_shown_address_changes() {
    let _serial = serial();
    let scope = Scope::new("lead-kill", &["2001:db8:a::/120"]);
    let (mut first, second) = scope.leader_and_standby("kill", LEASE_SECONDS);

    // A first batch is allocated; the leader dies while a second one is
    // still being created and allocated.
    scope.create(&scope.services("early", 0..40));
    scope.all_allocated(40, SETTLE, &[&first, &second]);
    let late = scope.services("late", 0..200);
    let creating = {
        let cp = scope.cp;
        std::thread::spawn(move || cp.kubectl_with_input(&["create", "-f", "-"], Some(&late)))
    };
    wait_for("the first late Service's address", SETTLE, POLL, || {
        scope
            .addresses()
            .iter()
            .any(|(name, ips)| name.starts_with("late-") && !ips.is_empty())
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&[&first, &second])));
    assert!(!second.acted(), "the standby wrote\n{}", logs(&[&second]));
    first.signal("KILL");
    first.exit(SETTLE);
    let killed = Instant::now();
    // What the statuses show once the leader is gone: none of it may change.
    let before = scope.addresses();
    let pending = before.values().filter(|ips| ips.is_empty()).count() + 240 - before.len();
    assert!(
        pending > 0,
        "every Service had its address before the kill: not mid-stream"
    );

    let bound = Duration::from_secs(LEASE_SECONDS) + HANDOVER_SLACK;
    scope.wait_holder("kill-b", bound, &[&first, &second]);
    let handover = killed.elapsed();
    creating
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("creating the late Services: {e}"));
    let after = scope.all_allocated(240, SETTLE, &[&first, &second]);
    eprintln!(
        "SIGKILL: {pending} Services were waiting; kill-b held the Lease after {handover:?} (lease {LEASE_SECONDS} s), all allocated after {:?}",
        killed.elapsed()
    );
    handed_over(&scope, &before, &after, &second);
}

#[test]
fn a_leader_stopped_with_sigterm_releases_the_lease_and_the_standby_takes_over_at_once() {
    let _serial = serial();
    // The default term: a handover that waited for it would take 15 s.
    let seconds = 15;
    let scope = Scope::new("lead-term", &["2001:db8:b::/120"]);
    let (mut first, second) = scope.leader_and_standby("term", seconds);
    scope.create(&scope.services("before", 0..3));
    let before = scope.all_allocated(3, SETTLE, &[&first, &second]);
    assert!(!second.acted(), "the standby wrote\n{}", logs(&[&second]));

    let stop = Instant::now();
    first.signal("TERM");
    // Well under the term: the Lease was released, not left to run out.
    let handover = scope.wait_holder("term-b", Duration::from_secs(3), &[&first, &second]);
    let status = first.exit(SETTLE);
    assert!(
        status.success(),
        "term-a exited with {status}\n{}",
        first.log()
    );
    assert!(first.log().contains("lease released"), "{}", first.log());
    scope.create(&scope.services("after", 0..3));
    let after = scope.all_allocated(6, SETTLE, &[&first, &second]);
    eprintln!(
        "SIGTERM: term-b held the Lease after {handover:?} (lease {seconds} s); a new Service had its address after {:?}",
        stop.elapsed()
    );
    handed_over(&scope, &before, &after, &second);
}

#[test]
fn a_missing_lease_permission_or_namespace_is_one_line() {
    let _serial = serial();
    let scope = Scope::new("lead-rbac", &["2001:db8:d::/120"]);
    let cp = scope.cp;
    // Everything the controller needs, but nothing on Leases.
    cp.kubectl(&["create", "serviceaccount", "-n", "lead-rbac", "herald"])
        .unwrap_or_else(|e| panic!("{e}"));
    cp.kubectl_with_input(
        &["apply", "-f", "-"],
        Some(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: lead-rbac}\nrules:\n- {apiGroups: [\"\"], resources: [services, namespaces], verbs: [get, list, watch]}\n- {apiGroups: [\"\"], resources: [services/status], verbs: [patch]}\n- {apiGroups: [herald.dev], resources: [ippools, ipallocations, policyplugins], verbs: [get, list, watch, create, update, delete]}\n- {apiGroups: [herald.dev], resources: [ippools/status, policyplugins/status], verbs: [patch]}\n- {apiGroups: [events.k8s.io], resources: [events], verbs: [create, patch]}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: lead-rbac}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: lead-rbac}\nsubjects: [{kind: ServiceAccount, name: herald, namespace: lead-rbac}]\n",
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let kubeconfig = cp
        .service_account_kubeconfig("lead-rbac", "herald")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut denied = Replica::start(
        &kubeconfig,
        "rbac-a",
        "lead-rbac",
        "lead-rbac",
        LEASE_SECONDS,
    );
    let status = denied.exit(SETTLE);
    let _ = cp.kubectl(&["delete", "clusterrolebinding,clusterrole", "lead-rbac"]);
    let log = denied.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(
        log.contains("forbidden: cannot get leases.coordination.k8s.io in namespace lead-rbac"),
        "{log}"
    );

    let mut lost = Replica::start(
        &cp.kubeconfig(),
        "rbac-b",
        "lead-nowhere",
        "lead-rbac",
        LEASE_SECONDS,
    );
    let status = lost.exit(SETTLE);
    let log = lost.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(
        log.contains("the lease namespace lead-nowhere does not exist"),
        "{log}"
    );
}
