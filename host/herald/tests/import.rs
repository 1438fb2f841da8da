//! `herald import metallb` as a user runs it: golden output for realistic
//! MetalLB configurations (CRDs and the legacy ConfigMap), the imported
//! tree planned with the cluster's Services moving no address, the three
//! allocation differences MetalLB users would notice, and clear errors on
//! malformed input.
//!
//! Inputs live in `tests/import/<case>/`, the expected objects and report
//! in `tests/import/<case>.expected/`; `UPDATE_GOLDEN=1 cargo test -p
//! herald --test import` rewrites them (review the diff before committing).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn here() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/import")
}

fn herald(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        .output()
        .expect("run herald")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("herald-import-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Compares `actual` with a golden file, or rewrites it with UPDATE_GOLDEN=1.
fn golden(path: &Path, actual: &str) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{} differs from the output (UPDATE_GOLDEN=1 rewrites it):\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

/// Imports a case into a fresh directory, checks every output file and the
/// report against the golden ones, and returns the directory (`tag` keeps
/// tests running at once apart).
fn import_case(case: &str, tag: &str) -> PathBuf {
    let out = temp_dir(&format!("{case}-{tag}"));
    let input = here().join(case);
    let run = herald(&[
        "import",
        "metallb",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(run.stdout.is_empty(), "with --out nothing goes to stdout");
    let expected = here().join(format!("{case}.expected"));
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    for file in &files {
        golden(
            &expected.join(file),
            &std::fs::read_to_string(out.join(file)).unwrap(),
        );
    }
    golden(&expected.join("report.txt"), &text(&run.stderr));
    // Every golden file was produced (none left over from an older run).
    if std::env::var_os("UPDATE_GOLDEN").is_none() {
        let mut golden_files: Vec<String> = std::fs::read_dir(&expected)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|f| f != "report.txt")
            .collect();
        golden_files.sort();
        assert_eq!(golden_files, files);
    }
    out
}

fn plan_json(paths: &[&Path]) -> (Output, serde_json::Value) {
    let mut args = vec!["plan", "-o", "json", "--fail-on-move"];
    args.extend(paths.iter().map(|p| p.to_str().unwrap()));
    let run = herald(&args);
    let json = serde_json::from_slice(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", text(&run.stdout), text(&run.stderr)));
    (run, json)
}

fn service<'a>(plan: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    let (ns, name) = id.split_once('/').unwrap();
    plan["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["namespace"] == ns && s["name"] == name)
        .unwrap_or_else(|| panic!("{id} is not in the plan: {plan:#}"))
}

fn ips(plan: &serde_json::Value, id: &str) -> Vec<String> {
    service(plan, id)["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ip| ip.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn crds_import_as_expected_and_move_no_address() {
    let out = import_case("crds", "cluster");
    let (run, plan) = plan_json(&[&out, &here().join("crds-cluster")]);
    assert!(run.status.success(), "{}\n{plan:#}", text(&run.stderr));
    assert_eq!(plan["errors"], serde_json::json!([]), "{plan:#}");
    assert!(plan.get("moves").is_none(), "{plan:#}");
    for (id, addresses) in [
        ("payments/api", vec!["198.51.100.130"]),
        ("shop/web", vec!["198.51.100.1", "2001:db8:1::1"]),
        ("red/frontend", vec!["203.0.113.7"]),
        // From a pool with autoAssign: false, without naming it: MetalLB
        // keeps it, so does Herald.
        ("shop/legacy", vec!["192.0.2.3"]),
    ] {
        assert_eq!(ips(&plan, id), addresses, "{id}");
    }
}

#[test]
fn legacy_configmap_imports_as_expected() {
    let out = import_case("legacy", "plan");
    let (run, plan) = plan_json(&[&out]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(plan["errors"], serde_json::json!([]), "{plan:#}");
    let valid: Vec<bool> = plan["pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["valid"].as_bool().unwrap())
        .collect();
    assert_eq!(valid, [true, true], "{plan:#}");
}

#[test]
fn stdout_holds_every_kind_and_strict_fails_on_anything_dropped() {
    let input = here().join("crds");
    let run = herald(&["import", "metallb", input.to_str().unwrap()]);
    assert!(run.status.success());
    let stdout = text(&run.stdout);
    for kind in [
        "kind: IPPool",
        "kind: BGPPeer",
        "kind: BGPAdvertisement",
        "kind: L2Advertisement",
    ] {
        assert!(stdout.contains(kind), "{kind} missing:\n{stdout}");
    }
    let strict = herald(&["import", "metallb", "--strict", input.to_str().unwrap()]);
    assert_eq!(strict.status.code(), Some(4), "{}", text(&strict.stderr));
    assert_eq!(
        strict.stdout, run.stdout,
        "--strict still writes the objects"
    );
}

#[test]
fn out_dir_holds_exactly_the_last_import() {
    let out = temp_dir("rerun");
    std::fs::write(out.join("l2advertisements.yaml"), "stale").unwrap();
    std::fs::write(out.join("notes.txt"), "the user's").unwrap();
    let import_into_out = |input: &Path| {
        herald(&[
            "import",
            "metallb",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
    };
    assert!(import_into_out(&here().join("legacy")).status.success());
    assert_ne!(
        std::fs::read_to_string(out.join("l2advertisements.yaml")).unwrap(),
        "stale"
    );
    let pools_only = temp_dir("pools-only");
    std::fs::write(
        pools_only.join("pool.yaml"),
        metallb_pool("a", "198.51.100.0/24", ""),
    )
    .unwrap();
    assert!(import_into_out(&pools_only).status.success());
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["ippools.yaml", "notes.txt"]);
}

#[test]
fn strict_passes_when_everything_is_carried_over() {
    let dir = temp_dir("clean");
    std::fs::write(
        dir.join("pool.yaml"),
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a, namespace: metallb-system}\nspec:\n  addresses: [198.51.100.0/24]\n",
    )
    .unwrap();
    let run = herald(&["import", "metallb", "--strict", dir.to_str().unwrap()]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(text(&run.stderr), "");
}

#[test]
fn a_service_outside_every_imported_pool_is_listed_as_moving() {
    let out = import_case("crds", "outside");
    let cluster = temp_dir("outside");
    std::fs::write(
        cluster.join("svc.yaml"),
        r#"apiVersion: v1
kind: Service
metadata: {name: stray, namespace: shop}
spec:
  type: LoadBalancer
  ipFamilyPolicy: SingleStack
  ipFamilies: [IPv4]
  clusterIP: 10.96.0.20
  clusterIPs: [10.96.0.20]
  ports: [{port: 80, protocol: TCP}]
status:
  loadBalancer:
    ingress: [{ip: 192.0.2.200}]
"#,
    )
    .unwrap();
    let (run, plan) = plan_json(&[&out, &cluster]);
    assert_eq!(run.status.code(), Some(5), "{plan:#}");
    assert_eq!(
        plan["moves"],
        serde_json::json!([{
            "namespace": "shop", "name": "stray",
            "from": ["192.0.2.200"], "to": ips(&plan, "shop/stray"),
        }])
    );
    let table = herald(&["plan", out.to_str().unwrap(), cluster.to_str().unwrap()]);
    let table = text(&table.stdout);
    assert!(
        table.contains("ADDRESS CHANGES") && table.contains("shop/stray: 192.0.2.200 -> "),
        "{table}"
    );
}

/// Imports MetalLB objects and plans them with Services (no status: new
/// Services), returning the plan.
fn import_and_plan(name: &str, metallb: &str, services: &str) -> serde_json::Value {
    let dir = temp_dir(name);
    std::fs::create_dir_all(dir.join("in")).unwrap();
    std::fs::write(dir.join("in/metallb.yaml"), metallb).unwrap();
    let run = herald(&[
        "import",
        "metallb",
        dir.join("in").to_str().unwrap(),
        "--out",
        dir.join("out").to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    std::fs::write(dir.join("services.yaml"), services).unwrap();
    let (_, plan) = plan_json(&[&dir.join("out"), &dir.join("services.yaml")]);
    plan
}

const SERVICE: &str = r#"apiVersion: v1
kind: Service
metadata: {name: NAME, namespace: NS}
spec:
  type: LoadBalancer
  ipFamilyPolicy: POLICY
  ports: [{port: 80, protocol: TCP}]
"#;

fn svc(ns: &str, name: &str, policy: &str) -> String {
    SERVICE
        .replace("NAME", name)
        .replace("NS", ns)
        .replace("POLICY", policy)
}

fn metallb_pool(name: &str, addresses: &str, allocation: &str) -> String {
    format!(
        "---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: {name}, namespace: metallb-system}}\nspec:\n  addresses: [{addresses}]\n{allocation}"
    )
}

#[test]
fn difference_restricted_pool_without_priority_is_preferred() {
    // MetalLB tries pools restricted to the Service's namespace first; by
    // name alone Herald would take "a-open".
    let pools = metallb_pool("a-open", "198.51.100.0/24", "")
        + &metallb_pool(
            "z-team",
            "203.0.113.0/24",
            "  serviceAllocation:\n    namespaces: [team]\n",
        );
    let plan = import_and_plan(
        "restricted",
        &pools,
        &(svc("team", "web", "SingleStack") + "---\n" + &svc("other", "web", "SingleStack")),
    );
    assert_eq!(service(&plan, "team/web")["pool"], "z-team", "{plan:#}");
    assert_eq!(service(&plan, "other/web")["pool"], "a-open", "{plan:#}");
}

#[test]
fn difference_prefer_dual_stack_stays_in_an_ipv4_only_restricted_pool() {
    let pools = metallb_pool("open-dual", "198.51.100.0/24, 2001:db8::/120", "")
        + &metallb_pool(
            "team-v4",
            "203.0.113.0/24",
            "  serviceAllocation:\n    namespaces: [team]\n",
        );
    let plan = import_and_plan(
        "dual",
        &pools,
        &(svc("team", "web", "PreferDualStack")
            + "---\n"
            + &svc("other", "web", "PreferDualStack")),
    );
    assert_eq!(ips(&plan, "team/web"), ["203.0.113.0"], "{plan:#}");
    assert_eq!(service(&plan, "team/web")["pool"], "team-v4");
    assert_eq!(ips(&plan, "other/web"), ["198.51.100.0", "2001:db8::"]);
}

#[test]
fn difference_host_bits_are_masked_and_reported() {
    let dir = temp_dir("hostbits");
    std::fs::write(
        dir.join("pool.yaml"),
        metallb_pool("v6", "\"2001:db8::1/127\"", ""),
    )
    .unwrap();
    let run = herald(&["import", "metallb", dir.to_str().unwrap()]);
    assert!(run.status.success());
    assert!(
        text(&run.stdout).contains("- 2001:db8::/127"),
        "{}",
        text(&run.stdout)
    );
    assert!(
        text(&run.stderr).contains("spec.addresses[0]: 2001:db8::1/127 has host bits set"),
        "{}",
        text(&run.stderr)
    );
    let plan = import_and_plan(
        "hostbits",
        &metallb_pool("v6", "\"2001:db8::1/127\"", ""),
        &svc("a", "web", "SingleStack").replace(
            "ipFamilyPolicy: SingleStack",
            "ipFamilyPolicy: SingleStack\n  ipFamilies: [IPv6]",
        ),
    );
    // MetalLB hands out the first address of the masked CIDR.
    assert_eq!(ips(&plan, "a/web"), ["2001:db8::"], "{plan:#}");
}

#[test]
fn malformed_input_names_the_file_and_object_and_exits_2() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "wrong-kind",
            "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n",
            "Service \"shop/web\": v1 Service is not MetalLB configuration",
        ),
        (
            "old-version",
            "apiVersion: metallb.io/v1alpha1\nkind: AddressPool\nmetadata: {name: old, namespace: metallb-system}\nspec: {}\n",
            "AddressPool \"metallb-system/old\": metallb.io/v1alpha1 AddressPool is not a MetalLB kind",
        ),
        (
            "bad-cidr",
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: blue, namespace: metallb-system}\nspec: {addresses: [198.51.100.0/33]}\n",
            "IPAddressPool \"metallb-system/blue\": spec.addresses[0]: invalid CIDR \"198.51.100.0/33\"",
        ),
        (
            "bad-range",
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: blue, namespace: metallb-system}\nspec: {addresses: [198.51.100.9-198.51.100.1]}\n",
            "IPAddressPool \"metallb-system/blue\": spec.addresses[0]: invalid IP range",
        ),
        (
            "legacy-not-yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config, namespace: metallb-system}\ndata:\n  config: \"address-pools: [\"\n",
            "ConfigMap \"metallb-system/config\": data.config is not MetalLB's configuration",
        ),
        (
            "legacy-bad-protocol",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config, namespace: metallb-system}\ndata:\n  config: |\n    address-pools:\n    - {name: a, protocol: arp, addresses: [198.51.100.0/24]}\n",
            "ConfigMap \"metallb-system/config\": address-pools[0] \"a\": protocol \"arp\" is neither layer2 nor bgp",
        ),
        (
            "configmap-without-config",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other, namespace: default}\ndata: {a: b}\n",
            "ConfigMap \"default/other\": not MetalLB's legacy configuration",
        ),
        (
            "wrong-type",
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: blue, namespace: metallb-system}\nspec: {addresses: 5}\n",
            "IPAddressPool \"metallb-system/blue\": spec: ",
        ),
        (
            "unknown-community",
            "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: adv, namespace: metallb-system}\nspec: {communities: [nope]}\n",
            "BGPAdvertisement \"metallb-system/adv\": spec.communities[0]: \"nope\" is neither",
        ),
        (
            "bad-duration",
            "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: p, namespace: metallb-system}\nspec: {myASN: 1, peerASN: 2, peerAddress: 192.0.2.1, holdTime: soon}\n",
            "BGPPeer \"metallb-system/p\": spec.holdTime: must be",
        ),
        ("not-yaml", "apiVersion: [\n", "document 1: "),
        (
            "unnamed",
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nspec: {addresses: [198.51.100.0/24]}\n",
            "IPAddressPool \"\": metadata.name is missing",
        ),
    ];
    for (name, yaml, message) in cases {
        let dir = temp_dir(name);
        let file = dir.join(format!("{name}.yaml"));
        std::fs::write(&file, yaml).unwrap();
        let run = herald(&["import", "metallb", dir.to_str().unwrap()]);
        let stderr = text(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("{}: ", file.display())) && stderr.contains(message),
            "{name}: expected the file and {message:?} in:\n{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert!(run.stdout.is_empty(), "{name}: nothing is written on error");
    }
}
