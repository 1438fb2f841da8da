//! Herald's API on a real kube-apiserver (tests/control-plane): the CRDs
//! `herald crds` prints are accepted, pass the API server's structural
//! schema checks and become Established; the example GitOps tree applies
//! as it is; `kubectl get` shows the printer columns; the schema refuses
//! what the loader refuses.
//!
//! Needs go, openssl and setpriv (scripts/test.sh; the control plane is
//! built once per machine by scripts/control-plane-build.sh).

use std::path::Path;
use std::process::Command;

use herald_control_plane::ControlPlane;

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The shared control plane with Herald's CRDs installed.
fn with_crds() -> &'static ControlPlane {
    herald_control_plane::with_crds(env!("CARGO_BIN_EXE_herald"))
}

#[test]
fn crds_are_structural_and_established() {
    let cp = with_crds();
    let out = text(
        &cp.kubectl(&["get", "crd", "-o", "jsonpath={range .items[*]}{.metadata.name} {range .status.conditions[*]}{.type}={.status};{end}{\"\\n\"}{end}"])
            .unwrap(),
    );
    for kind in [
        "ippools.herald.dev",
        "ipallocations.herald.dev",
        "bgppeers.herald.dev",
        "bgpadvertisements.herald.dev",
        "l2advertisements.herald.dev",
        "policyplugins.herald.dev",
        "bfdprofiles.herald.dev",
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{kind} ")))
            .unwrap_or_else(|| panic!("{kind} missing:\n{out}"));
        assert!(line.contains("Established=True"), "{line}");
        // A schema that is not structural shows as NonStructuralSchema=True.
        assert!(!line.contains("NonStructuralSchema=True"), "{line}");
    }
}

#[test]
fn the_gitops_example_applies_and_kubectl_shows_pools_and_allocations() {
    let cp = with_crds();
    let tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/gitops");
    // Namespaces first, then everything (server-side: what a GitOps tool does).
    cp.kubectl(&[
        "apply",
        "--server-side",
        "-f",
        tree.join("namespaces").to_str().unwrap(),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    cp.kubectl(&["apply", "--server-side", "-R", "-f", tree.to_str().unwrap()])
        .unwrap_or_else(|e| panic!("{e}"));
    let pools = text(&cp.kubectl(&["get", "ippools"]).unwrap());
    let header: Vec<&str> = pools.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "ADDRESSES",
            "AUTO",
            "CAPACITY",
            "ALLOCATED",
            "VALID",
            "AGE"
        ],
        "{pools}"
    );
    assert!(pools.contains("public"), "{pools}");
    assert!(pools.contains("payments"), "{pools}");
    let allocations = text(&cp.kubectl(&["get", "ipallocations"]).unwrap());
    assert!(allocations.starts_with("NAME"), "{allocations}");
    assert!(allocations.contains("198.51.100.7"), "{allocations}");
}

#[test]
fn the_schema_refuses_a_pool_with_a_wrongly_typed_field() {
    let cp = with_crds();
    let bad = "apiVersion: herald.dev/v1alpha1\nkind: IPPool\nmetadata: {name: typo-pool}\nspec:\n  addresses: [198.51.100.0/28]\n  autoAssign: \"sometimes\"\n";
    let e = cp
        .kubectl_with_input(&["apply", "--server-side", "-f", "-"], Some(bad))
        .expect_err("a string autoAssign is refused");
    assert!(e.to_string().contains("autoAssign"), "{e}");
}

/// MetalLB's habit `holdTime: 90s` (and plain seconds) passes the API
/// server's schema, and `herald plan` reads the stored object the same way.
#[test]
fn bgp_peer_times_are_accepted_as_seconds_or_durations() {
    let cp = with_crds();
    let peer = "apiVersion: herald.dev/v1alpha1\nkind: BGPPeer\nmetadata: {name: habit}\nspec:\n  peerAddress: 192.0.2.1\n  peerASN: 65001\n  myASN: 65010\n  holdTime: 90s\n  keepaliveTime: 30\n  connectTime: 1m30s\n";
    cp.kubectl_with_input(&["apply", "--server-side", "-f", "-"], Some(peer))
        .unwrap_or_else(|e| panic!("{e}"));
    let stored = text(
        &cp.kubectl(&["get", "bgppeer", "habit", "-o", "yaml"])
            .unwrap(),
    );
    assert!(stored.contains("holdTime: 90s"), "{stored}");
    // The stored object, as exported from the cluster, plans without error.
    let dir = std::env::temp_dir().join(format!("herald-kube-crds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("peer.yaml"), &stored).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["plan", "--output", "json", dir.to_str().unwrap()])
        .output()
        .expect("run herald plan");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    cp.kubectl(&["delete", "bgppeer", "habit"]).unwrap();
}
