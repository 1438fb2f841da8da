//! What `herald controller` reports on a real kube-apiserver
//! (tests/control-plane), besides addresses: Events on Services (one per
//! transition: `Allocated`, `Released`, the Pending reason such as
//! `PoolExhausted`), `IPPool` status (capacity, allocated, the `Valid`
//! condition for overlapping and malformed pools) and what `kubectl get
//! ippools` prints of it, `PolicyPlugin` status (the digest loaded, the
//! error of a broken one) and `kubectl get policyplugins`.
//!
//! As in kube_controller.rs: the controller is the built `herald` binary
//! (`herald_control_plane::herald`), one at a time (`herald_control_plane::herald::serial`); each test
//! has its own namespace and pools, and its pools admit only its
//! namespace. Addresses are in 198.51.100.128/25.
//!
//! Needs go, openssl and setpriv (scripts/test.sh), and the example plugin
//! components (`HERALD_PLUGIN_DIR`, else `target/plugins`).

use std::path::PathBuf;

use herald_control_plane::ControlPlane;
use herald_control_plane::herald::serial;
use herald_control_plane::herald::{Controller, Scope, condition, ingress};
use serde_json::Value;

/// The `herald` binary under test.
const HERALD: &str = env!("CARGO_BIN_EXE_herald");

fn with_crds() -> &'static ControlPlane {
    herald_control_plane::with_crds(HERALD)
}

/// The Events Herald recorded on the Service `name` of `namespace`, oldest
/// first.
fn events(cp: &ControlPlane, namespace: &str, name: &str) -> Vec<Value> {
    let out = cp
        .kubectl(&["get", "events.events.k8s.io", "-n", namespace, "-o", "json"])
        .unwrap_or_else(|e| panic!("{e}"));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut events: Vec<Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["regarding"]["kind"] == "Service"
                && e["regarding"]["name"] == name
                && e["reportingController"] == "herald-controller"
        })
        .cloned()
        .collect();
    events.sort_by_key(|e| e["eventTime"].as_str().unwrap_or_default().to_owned());
    events
}

/// The Events of `reason` among `events`.
fn with_reason<'a>(events: &'a [Value], reason: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["reason"] == reason).collect()
}

/// A cluster-scoped object as JSON (`kind/name`; `None`: not there).
fn get(cp: &ControlPlane, object: &str) -> Option<Value> {
    let out = cp.kubectl(&["get", object, "-o", "json"]).ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// The status and reason of an object's condition `type_`.
fn condition_of(object: &Value, type_: &str) -> Option<(String, String, String)> {
    let c = object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?;
    Some((
        c["status"].as_str()?.to_owned(),
        c["reason"].as_str()?.to_owned(),
        c["message"].as_str()?.to_owned(),
    ))
}

/// `kubectl get ARGS…` as a table: the row whose first cell is `name`, as
/// (column, cell) pairs; columns start where the header has a word after
/// two or more spaces (kubectl pads with three), so a column name may have
/// a space (`LOADED DIGEST`).
fn table_row(cp: &ControlPlane, args: &[&str], name: &str) -> Vec<(String, String)> {
    let mut full = vec!["get"];
    full.extend_from_slice(args);
    let out = cp.kubectl(&full).unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let bytes = header.as_bytes();
    let starts: Vec<usize> = (0..bytes.len())
        .filter(|&i| bytes[i] != b' ' && (i == 0 || (i >= 2 && bytes[i - 2..i] == *b"  ")))
        .collect();
    let row = lines
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row {name}:\n{text}"));
    starts
        .iter()
        .enumerate()
        .map(|(n, &start)| {
            let end = starts
                .get(n + 1)
                .copied()
                .unwrap_or(row.len())
                .min(row.len());
            let column_end = starts.get(n + 1).copied().unwrap_or(header.len());
            (
                header[start..column_end].trim().to_owned(),
                row.get(start..end).unwrap_or_default().trim().to_owned(),
            )
        })
        .collect()
}

/// The cell of `column` in a row of [`table_row`].
fn cell<'a>(row: &'a [(String, String)], column: &str) -> &'a str {
    row.iter()
        .find(|(c, _)| c == column)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no column {column}: {row:?}"))
}

#[test]
fn exhaustion_gives_the_pending_condition_and_one_warning_event() {
    let _serial = serial();
    let cp = with_crds();
    let mut scope = Scope::new(cp, "st-full");
    scope.pool("st-full", "198.51.100.130/32");
    let controller = Controller::start(HERALD, &cp.kubeconfig());
    scope.service("first");
    controller.wait("first's address", || {
        let svc = scope.get_service("first")?;
        (ingress(&svc) == ["198.51.100.130"]).then_some(())
    });
    scope.service("second");
    let c = controller.wait("second's Pending condition", || {
        condition(&scope.get_service("second")?)
    });
    assert_eq!(
        (&c["status"], &c["reason"]),
        (&"False".into(), &"PoolExhausted".into()),
        "{c}"
    );
    let warning = controller.wait("second's PoolExhausted Event", || {
        with_reason(&events(cp, "st-full", "second"), "PoolExhausted")
            .first()
            .map(|e| (*e).clone())
    });
    assert_eq!(warning["type"], "Warning", "{warning}");
    assert_eq!(
        warning["note"], c["message"],
        "the Event says what the condition says"
    );
    assert_eq!(
        warning["regarding"]["uid"],
        scope.get_service("second").unwrap()["metadata"]["uid"]
    );

    // More plans (a third Pending Service) give second no second Event.
    scope.service("third");
    controller.wait("third's PoolExhausted Event", || {
        (!with_reason(&events(cp, "st-full", "third"), "PoolExhausted").is_empty()).then_some(())
    });
    let second = events(cp, "st-full", "second");
    assert_eq!(
        with_reason(&second, "PoolExhausted").len(),
        1,
        "{second:#?}"
    );
    assert!(second[0]["series"].is_null(), "counted again: {second:#?}");
    let first = events(cp, "st-full", "first");
    assert_eq!(
        first
            .iter()
            .map(|e| e["reason"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["Allocated"],
        "first's only transition: {first:#?}"
    );
}

#[test]
fn allocation_and_release_are_events_naming_addresses_and_pool() {
    let _serial = serial();
    let cp = with_crds();
    let mut scope = Scope::new(cp, "st-events");
    scope.pool("st-events", "198.51.100.136/30");
    let controller = Controller::start(HERALD, &cp.kubeconfig());
    scope.service("web");
    let allocated = controller.wait("web's Allocated Event", || {
        with_reason(&events(cp, "st-events", "web"), "Allocated")
            .first()
            .map(|e| (*e).clone())
    });
    assert_eq!(allocated["type"], "Normal");
    assert_eq!(allocated["note"], "198.51.100.136 from pool st-events");
    assert_eq!(allocated["action"], "Allocate");
    assert_eq!(allocated["related"]["kind"], "IPAllocation");
    assert_eq!(allocated["related"]["name"], "198-51-100-136");

    // No longer a LoadBalancer: its address is released.
    cp.kubectl(&[
        "patch",
        "service",
        "-n",
        "st-events",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"type":"ClusterIP"}}"#,
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let released = controller.wait("web's Released Event", || {
        with_reason(&events(cp, "st-events", "web"), "Released")
            .first()
            .map(|e| (*e).clone())
    });
    assert_eq!(released["type"], "Normal");
    let note = released["note"].as_str().unwrap();
    assert!(note.starts_with("198.51.100.136 released: "), "{note}");
    assert_eq!(released["action"], "Release");
    let all = events(cp, "st-events", "web");
    assert_eq!(all.len(), 2, "one Event per transition: {all:#?}");
}

#[test]
fn pool_status_follows_services_and_kubectl_get_ippools_shows_it() {
    let _serial = serial();
    let cp = with_crds();
    let mut scope = Scope::new(cp, "st-count");
    scope.pool("st-count", "198.51.100.144/30");
    let controller = Controller::start(HERALD, &cp.kubeconfig());
    let allocated = |n: i64| {
        controller.wait(&format!("the pool's status to show {n} allocated"), || {
            let pool = get(cp, "ippool/st-count")?;
            (pool["status"]["allocated"] == n).then_some(pool)
        })
    };
    let pool = allocated(0);
    assert_eq!(pool["status"]["capacity"], "4");
    assert_eq!(
        pool["status"]["ipv4"],
        serde_json::json!({"capacity": "4", "allocated": 0})
    );
    assert!(pool["status"]["ipv6"].is_null(), "{pool}");
    let (status, reason, _) = condition_of(&pool, "Valid").unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Valid"));
    assert_eq!(pool["spec"]["autoAssign"], true, "the schema's default");

    scope.service("a");
    scope.service("b");
    let pool = allocated(2);
    assert_eq!(pool["status"]["ipv4"]["allocated"], 2);
    let row = table_row(cp, &["ippools"], "st-count");
    assert_eq!(cell(&row, "ADDRESSES"), "[\"198.51.100.144/30\"]");
    assert_eq!(cell(&row, "AUTO"), "true");
    assert_eq!(cell(&row, "CAPACITY"), "4");
    assert_eq!(cell(&row, "ALLOCATED"), "2");
    assert_eq!(cell(&row, "VALID"), "True");

    scope.delete_service("a");
    allocated(1);
    let row = table_row(cp, &["ippools"], "st-count");
    assert_eq!(cell(&row, "ALLOCATED"), "1");
}

#[test]
fn overlapping_and_malformed_pools_get_their_condition() {
    let _serial = serial();
    let cp = with_crds();
    let mut scope = Scope::new(cp, "st-bad");
    scope.pool("st-bad-first", "198.51.100.152/29");
    let controller = Controller::start(HERALD, &cp.kubeconfig());
    controller.wait("the first pool to be Valid", || {
        let pool = get(cp, "ippool/st-bad-first")?;
        (condition_of(&pool, "Valid")?.0 == "True").then_some(())
    });
    scope.pool("st-bad-second", "198.51.100.156/30");
    scope.pool("st-bad-loop", "127.0.0.1/32");
    let (status, reason, message) = controller.wait("the second pool's condition", || {
        condition_of(&get(cp, "ippool/st-bad-second")?, "Valid")
    });
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Overlapping"));
    assert!(message.contains("\"st-bad-first\""), "{message}");
    let second = get(cp, "ippool/st-bad-second").unwrap();
    assert_eq!(second["status"]["capacity"], "0");
    let (status, reason, message) = controller.wait("the malformed pool's condition", || {
        condition_of(&get(cp, "ippool/st-bad-loop")?, "Valid")
    });
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Malformed"));
    assert!(message.contains("loopback"), "{message}");
    let row = table_row(cp, &["ippools"], "st-bad-second");
    assert_eq!(cell(&row, "VALID"), "False");

    // The first pool goes: the second is used.
    cp.kubectl(&["delete", "ippool", "st-bad-first"])
        .unwrap_or_else(|e| panic!("{e}"));
    controller.wait("the second pool to become Valid", || {
        let pool = get(cp, "ippool/st-bad-second")?;
        (condition_of(&pool, "Valid")?.0 == "True" && pool["status"]["capacity"] == "4")
            .then_some(())
    });
}

/// The example component `name`.wasm and its SHA-256 digest.
fn component(name: &str) -> (PathBuf, String) {
    use sha2::{Digest, Sha256};
    let dir = std::env::var_os("HERALD_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/plugins"));
    let wasm = dir.join(format!("{name}.wasm"));
    let bytes = std::fs::read(&wasm).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the plugins first: ./scripts/build-plugins.sh",
            wasm.display()
        )
    });
    let digest = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (wasm, digest)
}

/// Deletes the PolicyPlugins when the test ends.
struct Plugins(&'static ControlPlane, Vec<&'static str>);

impl Drop for Plugins {
    fn drop(&mut self) {
        for name in &self.1 {
            let _ = self
                .0
                .kubectl(&["delete", "policyplugin", name, "--wait=false"]);
        }
    }
}

#[test]
fn a_policy_plugin_shows_its_digest_and_a_broken_one_its_error() {
    let (wasm, digest) = component("stable-hash");
    let _serial = serial();
    let cp = with_crds();
    let _plugins = Plugins(cp, vec!["st-good", "st-broken"]);
    let plugin = |name: &str, sha256: &str| {
        format!(
            "apiVersion: herald.dev/v1alpha1\nkind: PolicyPlugin\nmetadata: {{name: {name}}}\nspec: {{world: allocator, sha256: \"{sha256}\", source: {{file: \"{}\"}}}}\n",
            wasm.display()
        )
    };
    cp.kubectl_with_input(&["apply", "-f", "-"], Some(&plugin("st-good", &digest)))
        .unwrap_or_else(|e| panic!("{e}"));
    // The same file under a digest it does not have.
    let wrong = "0".repeat(64);
    cp.kubectl_with_input(&["apply", "-f", "-"], Some(&plugin("st-broken", &wrong)))
        .unwrap_or_else(|e| panic!("{e}"));
    let controller = Controller::start(HERALD, &cp.kubeconfig());

    let good = controller.wait("st-good's status", || {
        let p = get(cp, "policyplugin/st-good")?;
        p["status"]["loadedDigest"].is_string().then_some(p)
    });
    assert_eq!(good["status"]["loadedDigest"], digest.as_str());
    assert!(good["status"]["lastError"].is_null(), "{good}");
    let (status, reason, _) = condition_of(&good, "Ready").unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Loaded"));

    let broken = controller.wait("st-broken's status", || {
        let p = get(cp, "policyplugin/st-broken")?;
        condition_of(&p, "Ready").is_some().then_some(p)
    });
    let (status, reason, message) = condition_of(&broken, "Ready").unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("False", "LoadFailed"));
    let error = broken["status"]["lastError"].as_str().unwrap_or_default();
    assert!(
        error.contains(&wrong[..12]) || error.contains("digest"),
        "{error}"
    );
    assert_eq!(error, message);
    assert!(broken["status"]["loadedDigest"].is_null(), "{broken}");

    let row = table_row(cp, &["policyplugins"], "st-good");
    assert_eq!(cell(&row, "READY"), "True");
    assert_eq!(cell(&row, "LOADED DIGEST"), digest);
    let row = table_row(cp, &["policyplugins"], "st-broken");
    assert_eq!(cell(&row, "READY"), "False");

    // Fixed: it loads, and the error is gone.
    cp.kubectl_with_input(&["apply", "-f", "-"], Some(&plugin("st-broken", &digest)))
        .unwrap_or_else(|e| panic!("{e}"));
    controller.wait("st-broken to load once fixed", || {
        let p = get(cp, "policyplugin/st-broken")?;
        (condition_of(&p, "Ready")?.0 == "True" && p["status"]["lastError"].is_null()).then_some(())
    });
}
