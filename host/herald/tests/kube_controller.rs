//! `herald controller` on a real kube-apiserver (tests/control-plane): a
//! Service created with kubectl gets its address in status, the condition
//! `herald.dev/Allocated` and its `IPAllocation`; deleting it releases
//! both; a full pool gives the Pending condition (`PoolExhausted`); a
//! restart moves no address and rewrites nothing; `herald plan` over the
//! cluster's objects agrees, with an allocator plugin too (the example
//! components: `HERALD_PLUGIN_DIR`, else `target/plugins`); a kubeconfig that does not work, missing CRDs
//! (on a control plane of its own) and a missing RBAC permission are one
//! line each.
//!
//! The controller is the built `herald` binary, run as a child process
//! that is killed when the test ends (its log is shown on failure;
//! `herald_control_plane::herald`). Tests
//! that run a controller take `herald_control_plane::herald::serial`: a controller serves the whole
//! cluster. Each test has its own namespace and pools, and its pools admit
//! only its namespace (`allocation.namespaces`), so a leftover of another
//! test can never serve it. Addresses are in 198.51.100.0/24; the cluster's
//! ClusterIPs are 203.0.113.0/24.
//!
//! Needs go, openssl and setpriv (scripts/test.sh; the control plane is
//! built once per machine by scripts/control-plane-build.sh).

use std::path::PathBuf;
use std::process::{Command, Stdio};

use herald_control_plane::herald::serial;
use herald_control_plane::herald::{Controller, POLL, SETTLE, Scope, condition, ingress};
use herald_control_plane::{ControlPlane, shared};
use herald_netns::{TempDir, wait_for};
use serde_json::Value;

/// The `herald` binary under test.
const HERALD: &str = env!("CARGO_BIN_EXE_herald");

/// The shared control plane with Herald's CRDs installed.
fn with_crds() -> &'static ControlPlane {
    herald_control_plane::with_crds(HERALD)
}

#[test]
fn a_service_gets_address_condition_and_record_and_deleting_it_releases_them() {
    let _serial = serial();
    let cp = with_crds();
    let mut scope = Scope::new(cp, "ctl-basic");
    scope.pool("ctl-basic", "198.51.100.10-198.51.100.13");
    let controller = Controller::start(HERALD, &cp.kubeconfig());
    scope.service("web");

    let svc = controller.wait("web's address in status", || {
        let svc = scope.get_service("web")?;
        (!ingress(&svc).is_empty() && condition(&svc).is_some()).then_some(svc)
    });
    assert_eq!(ingress(&svc), ["198.51.100.10"]);
    assert_eq!(svc["status"]["loadBalancer"]["ingress"][0]["ipMode"], "VIP");
    let c = condition(&svc).unwrap();
    assert_eq!(c["status"], "True", "{c}");
    assert_eq!(c["reason"], "Allocated", "{c}");

    let record = scope
        .record("198.51.100.10")
        .expect("the IPAllocation exists once the status shows the address");
    assert_eq!(record["spec"]["address"], "198.51.100.10");
    assert_eq!(record["spec"]["pool"], "ctl-basic");
    assert_eq!(
        record["spec"]["services"],
        serde_json::json!([{"namespace": "ctl-basic", "name": "web"}])
    );
    let owner = &record["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Service");
    assert_eq!(owner["name"], "web");
    assert_eq!(owner["uid"], svc["metadata"]["uid"]);

    scope.delete_service("web");
    controller.wait("the IPAllocation of a deleted Service to go", || {
        scope.record("198.51.100.10").is_none().then_some(())
    });
}

#[test]
fn an_exhausted_pool_gives_the_pending_condition_until_an_address_is_released() {
    let _serial = serial();
    let cp = with_crds();
    let mut scope = Scope::new(cp, "ctl-full");
    scope.pool("ctl-full", "198.51.100.20/32");
    let controller = Controller::start(HERALD, &cp.kubeconfig());
    scope.service("first");
    controller.wait("first's address", || {
        let svc = scope.get_service("first")?;
        (ingress(&svc) == ["198.51.100.20"]).then_some(())
    });
    scope.service("second");
    let c = controller.wait("second's Pending condition", || {
        let svc = scope.get_service("second")?;
        condition(&svc)
    });
    assert_eq!(c["status"], "False", "{c}");
    assert_eq!(c["reason"], "PoolExhausted", "{c}");
    assert!(
        ingress(&scope.get_service("second").unwrap()).is_empty(),
        "a Pending Service shows no address"
    );

    // The address comes free: the Pending Service gets it.
    scope.delete_service("first");
    controller.wait("second to get the released address", || {
        let svc = scope.get_service("second")?;
        let c = condition(&svc)?;
        (ingress(&svc) == ["198.51.100.20"] && c["status"] == "True").then_some(())
    });
    let record = scope.record("198.51.100.20").unwrap();
    assert_eq!(record["spec"]["services"][0]["name"], "second");
}

#[test]
fn restarting_the_controller_moves_no_address_and_rewrites_nothing() {
    let _serial = serial();
    let cp = with_crds();
    let mut scope = Scope::new(cp, "ctl-restart");
    scope.pool("ctl-restart", "198.51.100.32/29");
    let names = ["a", "b", "c"];
    let controller = Controller::start(HERALD, &cp.kubeconfig());
    for name in names {
        scope.service(name);
    }
    let before: Vec<(String, Value)> = controller.wait("every Service's address", || {
        names
            .iter()
            .map(|n| {
                let svc = scope.get_service(n)?;
                (!ingress(&svc).is_empty()).then(|| (ingress(&svc)[0].clone(), svc))
            })
            .collect()
    });
    let version = |v: &Value| {
        v["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let records: Vec<String> = before
        .iter()
        .map(|(ip, _)| version(&scope.record(ip).unwrap()))
        .collect();
    drop(controller);

    // While it is down, a Service goes away and one comes: neither may move
    // or rewrite the others.
    scope.delete_service("a");
    scope.service("d");
    let controller = Controller::start(HERALD, &cp.kubeconfig());
    let d = controller.wait("d's address", || {
        let svc = scope.get_service("d")?;
        (!ingress(&svc).is_empty()).then(|| ingress(&svc))
    });
    // a's address was released, and is the lowest free one: d's.
    assert_eq!(d, [before[0].0.clone()]);
    let record = controller.wait("a's record to name d", || {
        let record = scope.record(&before[0].0)?;
        (record["spec"]["services"]
            == serde_json::json!([{"namespace": "ctl-restart", "name": "d"}]))
        .then_some(record)
    });
    assert_eq!(
        record["metadata"]["ownerReferences"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let log = controller.log();
    for (i, (ip, svc)) in before.iter().enumerate().skip(1) {
        let name = names[i];
        // A write the API server finds unchanged keeps the resourceVersion:
        // the controller's own log says what it wrote.
        let service = format!("service=ctl-restart/{name}");
        let record = format!("record={:?}", ip.replace('.', "-"));
        assert!(
            !log.split_whitespace().any(|t| t == service || t == record),
            "{name} was written again after the restart:\n{log}"
        );
        let now = scope.get_service(name).unwrap();
        assert_eq!(ingress(&now), [ip.as_str()], "{name} moved");
        assert_eq!(
            version(&now),
            version(svc),
            "{name} was written again after the restart"
        );
        assert_eq!(
            version(&scope.record(ip).unwrap()),
            records[i],
            "{name}'s record was written again after the restart"
        );
    }
}

/// Runs `herald controller` with `kubeconfig` and returns its exit status
/// and standard error, failing when it does not exit in time.
fn run_to_exit(kubeconfig: &std::path::Path) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(HERALD)
        .arg("controller")
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start herald controller");
    let status = wait_for("herald controller to exit", SETTLE, POLL, || {
        child.try_wait().ok().flatten()
    });
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{e}");
        }
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status, err)
}

#[test]
fn a_kubeconfig_that_does_not_work_is_one_line() {
    let cp = shared();
    let dir = TempDir::new("hctl").unwrap();
    // The test cluster's kubeconfig, pointed at a port nothing listens on.
    let text = std::fs::read_to_string(cp.kubeconfig()).unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let text = text.replace(cp.server(), &format!("https://127.0.0.1:{port}"));
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, text).unwrap();
    let (status, err) = run_to_exit(&path);
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot reach the API server"), "{err}");
}

#[test]
fn a_missing_rbac_permission_names_the_verb_and_resource() {
    let cp = with_crds();
    let scope = Scope::new(cp, "ctl-rbac");
    // A ServiceAccount that may list and watch Services and Namespaces
    // only.
    cp.kubectl(&["create", "serviceaccount", "-n", "ctl-rbac", "herald"])
        .unwrap_or_else(|e| panic!("{e}"));
    cp.kubectl(&[
        "create",
        "clusterrole",
        "ctl-rbac-herald",
        "--verb=list,watch",
        "--resource=services,namespaces",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    cp.kubectl(&[
        "create",
        "clusterrolebinding",
        "ctl-rbac-herald",
        "--clusterrole=ctl-rbac-herald",
        "--serviceaccount=ctl-rbac:herald",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let path = cp
        .service_account_kubeconfig("ctl-rbac", "herald")
        .unwrap_or_else(|e| panic!("{e}"));
    let (status, err) = run_to_exit(&path);
    let _ = cp.kubectl(&[
        "delete",
        "clusterrolebinding,clusterrole",
        "ctl-rbac-herald",
    ]);
    drop(scope);
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("forbidden: cannot list ippools.herald.dev"),
        "{err}"
    );
}

#[test]
fn herald_plan_over_the_cluster_s_objects_agrees_with_the_controller() {
    let _serial = serial();
    let cp = with_crds();
    let mut scope = Scope::new(cp, "ctl-agree");
    scope.pool("ctl-agree", "198.51.100.48/30");
    let controller = Controller::start(HERALD, &cp.kubeconfig());
    scope.service("plain");
    scope.apply(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: asks\n  namespace: ctl-agree\n  annotations: {herald.dev/ips: 198.51.100.50}\nspec: {type: LoadBalancer, ports: [{port: 80}]}\n",
    );
    for (name, port) in [("shared-a", 80), ("shared-b", 443)] {
        scope.apply(&format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: ctl-agree\n  annotations: {{herald.dev/sharing-key: k}}\nspec: {{type: LoadBalancer, ports: [{{port: {port}}}]}}\n"
        ));
    }
    let names = ["asks", "plain", "shared-a", "shared-b"];
    let cluster: Vec<Vec<String>> = controller.wait("every Service's condition", || {
        names
            .iter()
            .map(|n| {
                let svc = scope.get_service(n)?;
                condition(&svc).map(|_| ingress(&svc))
            })
            .collect()
    });
    assert_eq!(cluster[0], ["198.51.100.50"], "the requested address");
    assert_eq!(cluster[2], cluster[3], "the sharing Services share");

    // The same objects, exported, planned offline.
    let export = cp
        .kubectl(&[
            "get",
            "namespace/ctl-agree",
            "ippool/ctl-agree",
            "-o",
            "yaml",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
    let services = cp
        .kubectl(&["get", "services", "-n", "ctl-agree", "-o", "yaml"])
        .unwrap_or_else(|e| panic!("{e}"));
    let records = cp
        .kubectl(&["get", "ipallocations", "-o", "yaml"])
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = TempDir::new("hctl").unwrap();
    for (file, out) in [
        ("a.yaml", &export),
        ("b.yaml", &services),
        ("c.yaml", &records),
    ] {
        std::fs::write(dir.path().join(file), &out.stdout).unwrap();
    }
    let plan = Command::new(HERALD)
        .args(["plan", "-o", "json"])
        .arg(dir.path())
        .output()
        .expect("run herald plan");
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let plan: Value = serde_json::from_slice(&plan.stdout).unwrap();
    for (name, ips) in names.iter().zip(&cluster) {
        let row = plan["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["namespace"] == "ctl-agree" && s["name"] == *name)
            .unwrap_or_else(|| panic!("{name} is not in the plan: {plan}"));
        assert_eq!(&row["ips"], &serde_json::json!(ips), "{name}: {plan}");
    }
}

#[test]
fn missing_crds_are_one_line_naming_the_fix() {
    // A control plane of its own: the shared one has the CRDs.
    let bare = ControlPlane::start().unwrap_or_else(|e| panic!("{e}"));
    let (status, err) = run_to_exit(&bare.kubeconfig());
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("the herald.dev CRDs are not installed")
            && err.contains("kubectl apply --server-side -f examples/deploy/crds.yaml"),
        "{err}"
    );
}

#[test]
fn a_service_that_stops_being_a_load_balancer_is_cleared_and_released() {
    let _serial = serial();
    let cp = with_crds();
    let mut scope = Scope::new(cp, "ctl-type");
    scope.pool("ctl-type", "198.51.100.56/30");
    let controller = Controller::start(HERALD, &cp.kubeconfig());
    scope.service("web");
    controller.wait("web's address", || {
        let svc = scope.get_service("web")?;
        (ingress(&svc) == ["198.51.100.56"]).then_some(())
    });
    // Another condition, someone else's, must survive Herald's clearing.
    cp.kubectl(&[
        "patch",
        "service",
        "-n",
        "ctl-type",
        "web",
        "--subresource=status",
        "--type=strategic",
        "-p",
        r#"{"status":{"conditions":[{"type":"example.com/Other","status":"True","reason":"Test","message":"kept","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}"#,
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    cp.kubectl(&[
        "patch",
        "service",
        "-n",
        "ctl-type",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"type":"ClusterIP"}}"#,
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let svc = controller.wait("web's address and condition to go", || {
        let svc = scope.get_service("web")?;
        (ingress(&svc).is_empty() && condition(&svc).is_none()).then_some(svc)
    });
    let others: Vec<&str> = svc["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["type"].as_str())
        .collect();
    assert_eq!(others, ["example.com/Other"], "{svc}");
    controller.wait("web's record to go", || {
        scope.record("198.51.100.56").is_none().then_some(())
    });
}

#[test]
fn an_allocator_plugin_decides_in_the_controller_as_in_herald_plan() {
    use sha2::{Digest, Sha256};
    let dir = std::env::var_os("HERALD_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/plugins"));
    let wasm = dir.join("stable-hash.wasm");
    let bytes = std::fs::read(&wasm).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the plugins first: ./scripts/build-plugins.sh",
            wasm.display()
        )
    });
    let digest: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();

    let _serial = serial();
    let cp = with_crds();
    let mut scope = Scope::new(cp, "ctl-plugin");
    scope.apply(&format!(
        "apiVersion: herald.dev/v1alpha1\nkind: PolicyPlugin\nmetadata: {{name: ctl-plugin-hash}}\nspec: {{world: allocator, sha256: \"{digest}\", source: {{file: \"{}\"}}}}\n",
        wasm.display()
    ));
    scope.apply(
        "apiVersion: herald.dev/v1alpha1\nkind: IPPool\nmetadata: {name: ctl-plugin}\nspec:\n  addresses: [198.51.100.64/28]\n  allocatorPlugin: ctl-plugin-hash\n  allocation: {namespaces: [ctl-plugin]}\n",
    );
    scope.pools.push("ctl-plugin".to_owned());
    let controller = Controller::start(HERALD, &cp.kubeconfig());
    scope.service("web");
    let ips = controller.wait("web's address", || {
        let svc = scope.get_service("web")?;
        (!ingress(&svc).is_empty()).then(|| ingress(&svc))
    });

    // The same objects, without records or status: planned offline, the
    // plugin alone decides.
    let export = TempDir::new("hctl").unwrap();
    let objects = cp
        .kubectl(&[
            "get",
            "namespace/ctl-plugin",
            "ippool/ctl-plugin",
            "policyplugin/ctl-plugin-hash",
            "-o",
            "yaml",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(export.path().join("objects.yaml"), &objects.stdout).unwrap();
    let services = cp
        .kubectl(&["get", "services", "-n", "ctl-plugin", "-o", "json"])
        .unwrap_or_else(|e| panic!("{e}"));
    let mut services: Value = serde_json::from_slice(&services.stdout).unwrap();
    for item in services["items"].as_array_mut().unwrap() {
        item.as_object_mut().unwrap().remove("status");
    }
    std::fs::write(export.path().join("services.json"), services.to_string()).unwrap();
    let plan = Command::new(HERALD)
        .args(["plan", "-o", "json"])
        .arg(export.path())
        .output()
        .expect("run herald plan");
    let plan: Value = serde_json::from_slice(&plan.stdout).unwrap();
    let row = &plan["services"][0];
    assert_eq!(row["plugin"], "ctl-plugin-hash", "{plan}");
    assert_eq!(row["ips"], serde_json::json!(ips), "{plan}");
    assert_ne!(
        ips,
        ["198.51.100.64"],
        "the hash should not land on the pool's lowest address (the built-in choice)"
    );
    let _ = cp.kubectl(&["delete", "policyplugin", "ctl-plugin-hash", "--wait=false"]);
}

#[test]
fn an_ipv6_address_ending_in_a_zero_group_gets_a_valid_record_name() {
    let _serial = serial();
    let cp = with_crds();
    let mut scope = Scope::new(cp, "ctl-six");
    // Its lowest address, 2001:db8:1::, is written with a trailing "::".
    scope.pool("ctl-six", "2001:db8:1::/126");
    let controller = Controller::start(HERALD, &cp.kubeconfig());
    scope.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: ctl-six}\nspec: {type: LoadBalancer, ipFamilyPolicy: SingleStack, ipFamilies: [IPv6], ports: [{port: 80}]}\n",
    );
    let svc = controller.wait("web's IPv6 address", || {
        let svc = scope.get_service("web")?;
        (!ingress(&svc).is_empty()).then_some(svc)
    });
    assert_eq!(ingress(&svc), ["2001:db8:1::"]);
    let out = cp
        .kubectl(&["get", "ipallocation", "2001-db8-1--0", "-o", "json"])
        .unwrap_or_else(|e| panic!("{e}\n{}", controller.log()));
    let record: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["spec"]["address"], "2001:db8:1::");
}

/// Deletes cluster-scoped objects when the test ends (`kind/name` each).
struct Cleanup(&'static ControlPlane, Vec<&'static str>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for object in &self.1 {
            let _ = self.0.kubectl(&["delete", object, "--wait=false"]);
        }
    }
}

#[test]
fn a_record_the_api_server_refuses_holds_up_only_its_own_service() {
    let _serial = serial();
    let cp = with_crds();
    // An admission policy that refuses the record of 198.51.100.72.
    let _policy = Cleanup(
        cp,
        vec![
            "validatingadmissionpolicybinding/ctl-refuse",
            "validatingadmissionpolicy/ctl-refuse",
        ],
    );
    cp.kubectl_with_input(
        &["apply", "-f", "-"],
        Some(
            "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicy\nmetadata: {name: ctl-refuse}\nspec:\n  failurePolicy: Fail\n  matchConstraints:\n    resourceRules:\n    - {apiGroups: [herald.dev], apiVersions: [v1alpha1], operations: [CREATE], resources: [ipallocations]}\n  validations:\n  - {expression: \"object.spec.address != '198.51.100.72'\", message: 198.51.100.72 is reserved, reason: Invalid}\n---\napiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicyBinding\nmetadata: {name: ctl-refuse}\nspec: {policyName: ctl-refuse, validationActions: [Deny]}\n",
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let probe = "apiVersion: herald.dev/v1alpha1\nkind: IPAllocation\nmetadata: {name: 198-51-100-72}\nspec: {address: 198.51.100.72, pool: p, services: []}\n";
    wait_for("the admission policy to refuse", SETTLE, POLL, || {
        cp.kubectl_with_input(&["create", "--dry-run=server", "-f", "-"], Some(probe))
            .err()
            .filter(|e| e.to_string().contains("is reserved"))
    })
    .unwrap_or_else(|e| panic!("{e}"));

    let mut scope = Scope::new(cp, "ctl-refuse");
    scope.pool("ctl-refuse", "198.51.100.72-198.51.100.73");
    let controller = Controller::start(HERALD, &cp.kubeconfig());
    scope.service("first");
    controller.wait("the refusal in the controller's log", || {
        controller.log().contains("is reserved").then_some(())
    });
    scope.service("second");
    controller.wait("second's address", || {
        let svc = scope.get_service("second")?;
        (ingress(&svc) == ["198.51.100.73"] && condition(&svc)?["status"] == "True").then_some(())
    });
    let first = scope.get_service("first").unwrap();
    assert!(
        ingress(&first).is_empty(),
        "first shows an address that has no record: {first}"
    );
    assert!(scope.record("198.51.100.72").is_none());
}

#[test]
fn a_pool_edit_that_removes_an_address_releases_exactly_that_service_s_address() {
    let _serial = serial();
    let cp = with_crds();
    let mut scope = Scope::new(cp, "ctl-shrink");
    scope.pool("ctl-shrink", "198.51.100.80/29");
    let names = ["a", "b", "c"];
    let controller = Controller::start(HERALD, &cp.kubeconfig());
    for name in names {
        scope.service(name);
    }
    let version = |v: &Value| {
        v["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let before: Vec<(String, String, String)> = controller.wait("every Service's address", || {
        names
            .iter()
            .map(|n| {
                let svc = scope.get_service(n)?;
                let ip = ingress(&svc).first()?.clone();
                let record = scope.record(&ip)?;
                Some((ip, version(&svc), version(&record)))
            })
            .collect()
    });
    let ips: Vec<&str> = before.iter().map(|(ip, _, _)| ip.as_str()).collect();
    assert_eq!(ips, ["198.51.100.80", "198.51.100.81", "198.51.100.82"]);

    // b's address leaves the pool; the pool keeps room for b elsewhere.
    scope.apply(
        "apiVersion: herald.dev/v1alpha1\nkind: IPPool\nmetadata: {name: ctl-shrink}\nspec:\n  addresses: [\"198.51.100.80/32\", \"198.51.100.82-198.51.100.87\"]\n  allocation: {namespaces: [ctl-shrink]}\n",
    );
    let moved = controller.wait("b to get an address inside the edited pool", || {
        let svc = scope.get_service("b")?;
        let ip = ingress(&svc).first()?.clone();
        (ip != "198.51.100.81").then_some(ip)
    });
    assert_eq!(
        moved, "198.51.100.83",
        "b's new address: the lowest free one"
    );
    controller.wait("b's old record to be deleted", || {
        scope.record("198.51.100.81").is_none().then_some(())
    });
    for i in [0, 2] {
        let (ip, svc_version, record_version) = &before[i];
        let svc = scope.get_service(names[i]).unwrap();
        assert_eq!(ingress(&svc), [ip.as_str()], "{} moved", names[i]);
        assert_eq!(&version(&svc), svc_version, "{} was written", names[i]);
        assert_eq!(
            &version(&scope.record(ip).unwrap()),
            record_version,
            "{}'s record was written",
            names[i]
        );
    }
}
