//! `herald plan` and `herald crds` as a user runs them: golden output on
//! `examples/gitops`, exit codes, and clear errors on bad input.
//!
//! Golden files live in `tests/golden/` at the top of the repository;
//! `UPDATE_GOLDEN=1 cargo test -p herald --test plan` rewrites them (review
//! the diff before committing).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn herald(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run herald")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// Compares `actual` with the golden file, or rewrites it with UPDATE_GOLDEN=1.
fn golden(name: &str, actual: &str) {
    let path = repo().join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
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

/// Writes manifests into a fresh temporary directory.
fn manifests(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("herald-plan-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (file, text) in files {
        std::fs::write(dir.join(file), text).unwrap();
    }
    dir
}

const POOL: &str = "apiVersion: herald.dev/v1alpha1
kind: IPPool
metadata: {name: p}
spec:
  addresses: [198.51.100.0/31]
";

fn service(name: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n"
    )
}

#[test]
fn gitops_example_table_is_golden() {
    let out = herald(&["plan", "examples/gitops"]);
    assert!(out.status.success(), "{}", stderr(&out));
    golden("gitops.table.txt", &stdout(&out));
    assert!(
        stderr(&out).contains("Deployment") && stderr(&out).contains("skipped"),
        "other kinds get a one-line note: {}",
        stderr(&out)
    );
}

#[test]
fn gitops_example_json_is_golden_and_has_exactly_the_designed_keys() {
    let out = herald(&["plan", "examples/gitops", "--output", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    golden("gitops.json", &text);
    let plan: serde_json::Value = serde_json::from_str(&text).unwrap();
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&plan), ["errors", "pools", "services"]);
    for s in plan["services"].as_array().unwrap() {
        assert_eq!(
            keys(s),
            [
                "ips",
                "message",
                "name",
                "namespace",
                "plugin",
                "pool",
                "reason",
                "sharingKey",
                "status"
            ]
        );
    }
    for p in plan["pools"].as_array().unwrap() {
        assert_eq!(keys(p), ["allocated", "capacity", "name", "valid"]);
    }
}

/// Families as the cluster has them (docs/allocation.md, "Families"):
/// Services read from a cluster get addresses of their listed families
/// only; manifests from git are completed as a dual-stack cluster would.
#[test]
fn families_case_table_is_golden() {
    let out = herald(&["plan", "tests/golden/families"]);
    assert!(out.status.success(), "{}", stderr(&out));
    golden("families.table.txt", &stdout(&out));
}

#[test]
fn yaml_output_carries_the_same_plan_as_json() {
    let json = stdout(&herald(&["plan", "examples/gitops", "-o", "json"]));
    let yaml = stdout(&herald(&["plan", "examples/gitops", "-o", "yaml"]));
    let from_json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let from_yaml: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    assert_eq!(from_json, from_yaml);
}

#[test]
fn pending_services_exit_zero_or_three_with_fail_on_pending() {
    let dir = manifests(
        "pending",
        &[(
            "all.yaml",
            &format!("{POOL}{}{}{}", service("a"), service("b"), service("c")),
        )],
    );
    let dir = dir.to_str().unwrap();
    let out = herald(&["plan", dir]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("PoolExhausted"), "{}", stdout(&out));
    assert_eq!(
        herald(&["plan", dir, "--fail-on-pending"]).status.code(),
        Some(3)
    );
    let dir = manifests(
        "allocated",
        &[("all.yaml", &format!("{POOL}{}", service("a")))],
    );
    assert_eq!(
        herald(&["plan", dir.to_str().unwrap(), "--fail-on-pending"])
            .status
            .code(),
        Some(0)
    );
}

#[test]
fn capacities_are_exact_integers_beyond_2_to_the_53() {
    let dir = manifests(
        "big",
        &[(
            "pool.yaml",
            "apiVersion: herald.dev/v1alpha1\nkind: IPPool\nmetadata: {name: big}\nspec: {addresses: [\"2001:db8::/32\"]}\n",
        )],
    );
    let out = stdout(&herald(&["plan", dir.to_str().unwrap(), "-o", "json"]));
    assert!(
        out.contains("\"capacity\": 79228162514264337593543950336"),
        "{out}"
    );
}

/// Runs `herald plan` on one file and expects exit 2 with every fragment in
/// the message.
fn rejects(name: &str, text: &str, fragments: &[&str]) {
    let dir = manifests(name, &[("bad.yaml", text)]);
    let out = herald(&["plan", dir.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{name}: {err}");
    assert!(!err.contains("panicked"), "{name}: {err}");
    for f in fragments {
        assert!(err.contains(f), "{name}: {f:?} missing from: {err}");
    }
}

#[test]
fn malformed_yaml_names_the_file_and_line() {
    rejects(
        "syntax",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: [unclosed\n",
        &["bad.yaml:", "document 1"],
    );
    let dir = manifests("syntax-line", &[("bad.yaml", "a: 1\nb: [\n")]);
    let err = stderr(&herald(&["plan", dir.to_str().unwrap()]));
    assert!(
        err.contains("bad.yaml:3") || err.contains("bad.yaml:2"),
        "{err}"
    );
}

#[test]
fn unknown_fields_in_herald_kinds_are_rejected_by_path() {
    rejects(
        "unknown",
        "apiVersion: herald.dev/v1alpha1\nkind: IPPool\nmetadata: {name: p}\nspec:\n  addresses: [198.51.100.0/24]\n  autoAsign: false\n",
        &["bad.yaml", "IPPool \"p\"", "spec.autoAsign"],
    );
}

#[test]
fn wrong_types_name_the_field_and_line() {
    rejects(
        "types",
        "apiVersion: herald.dev/v1alpha1\nkind: IPPool\nmetadata: {name: p}\nspec:\n  addresses: [198.51.100.0/24]\n  autoAssign: sometimes\n",
        &["bad.yaml:6", "spec.autoAssign", "boolean"],
    );
    rejects(
        "service-types",
        "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: a}\nspec:\n  type: LoadBalancer\n  ports: [{port: eighty}]\n",
        &["bad.yaml:6", "Service \"a/s\"", "spec.ports[0].port"],
    );
}

#[test]
fn values_the_api_server_would_reject_are_errors() {
    rejects(
        "family",
        "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: a}\nspec: {type: LoadBalancer, ipFamilies: [IPv5]}\n",
        &["spec.ipFamilies[0]", "IPv5"],
    );
    rejects(
        "headless",
        "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: a}\nspec: {type: LoadBalancer, clusterIP: None}\n",
        &["Service \"a/s\"", "spec.clusterIP", "headless"],
    );
    rejects(
        "single-stack-two-families",
        "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: a}\nspec: {type: LoadBalancer, ipFamilyPolicy: SingleStack, ipFamilies: [IPv4, IPv6]}\n",
        &["spec.ipFamilyPolicy", "SingleStack"],
    );
}

#[test]
fn unknown_herald_kinds_and_non_mappings_are_errors() {
    rejects(
        "kind",
        "apiVersion: herald.dev/v1alpha1\nkind: IPPol\nmetadata: {name: p}\n",
        &["IPPol"],
    );
    rejects("scalar", "just a string\n", &["mapping"]);
}

#[test]
fn missing_paths_are_errors() {
    let out = herald(&["plan", "/nonexistent/herald"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("/nonexistent/herald"));
}

#[test]
fn malformed_pools_are_reported_and_the_rest_is_planned() {
    let dir = manifests(
        "badpool",
        &[(
            "all.yaml",
            &format!(
                "apiVersion: herald.dev/v1alpha1\nkind: IPPool\nmetadata: {{name: broken}}\nspec: {{addresses: [198.51.100.5/24]}}\n---\n{POOL}{}",
                service("a")
            ),
        )],
    );
    let out = herald(&["plan", dir.to_str().unwrap(), "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(plan["services"][0]["ips"][0], "198.51.100.0");
    assert_eq!(plan["errors"][0]["kind"], "IPPool");
    assert_eq!(plan["errors"][0]["name"], "broken");
    assert!(
        plan["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("spec.addresses[0]")
    );
    let broken = plan["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "broken")
        .unwrap();
    assert_eq!(broken["valid"], false);
    assert_eq!(broken["capacity"], 0);
}

#[test]
fn checked_in_crds_match_herald_crds() {
    let out = herald(&["crds"]);
    assert!(out.status.success());
    let checked_in = std::fs::read_to_string(repo().join("examples/deploy/crds.yaml")).unwrap();
    assert!(
        checked_in == stdout(&out),
        "examples/deploy/crds.yaml is stale: regenerate it with `cargo run -p herald -- crds > examples/deploy/crds.yaml`"
    );
}

/// Runs `herald` and waits at most `TIMEOUT` for it: a regression that
/// blocks (a FIFO opened for reading) fails the test instead of hanging the
/// suite, and the process is killed.
fn herald_bounded(args: &[&str]) -> Output {
    /// Far above the milliseconds `herald plan` takes on these inputs.
    const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
    let child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        .current_dir(repo())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run herald");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(TIMEOUT) {
        Ok(out) => out.expect("wait for herald"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("herald {args:?} still running after {TIMEOUT:?}; killed");
        }
    }
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

#[test]
fn fifos_are_refused_by_name_without_blocking() {
    let dir = manifests("fifo", &[("pool.yaml", POOL)]);
    let fifo = dir.join("f.yaml");
    mkfifo(&fifo);
    // Named on the command line, and found in a directory.
    for path in [&fifo, &dir] {
        let out = herald_bounded(&["plan", path.to_str().unwrap()]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!(
                "{}: is a FIFO, not a regular file",
                fifo.display()
            )),
            "{err}"
        );
    }
    // Under a name that is not a manifest's, a directory walk skips it.
    std::fs::rename(&fifo, dir.join("f.pipe")).unwrap();
    let out = herald_bounded(&["plan", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn devices_and_oversized_manifests_are_refused_by_name() {
    let dir = manifests("zero", &[("pool.yaml", POOL)]);
    let zero = dir.join("zero.yaml");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let out = herald_bounded(&["plan", dir.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("{}: is a character device", zero.display())),
        "{err}"
    );
    std::fs::remove_file(&zero).unwrap();
    // 64 MiB and one byte, sparse (no disk used).
    let big = dir.join("big.yaml");
    std::fs::File::create(&big)
        .unwrap()
        .set_len((64 << 20) + 1)
        .unwrap();
    let out = herald_bounded(&["plan", dir.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("{}: larger than 64 MiB", big.display())),
        "{err}"
    );
}

#[test]
fn plugin_sources_that_are_devices_or_too_large_are_reported() {
    let plugin = |name: &str, file: &str| {
        format!(
            "---\napiVersion: herald.dev/v1alpha1\nkind: PolicyPlugin\nmetadata: {{name: {name}}}\nspec: {{world: allocator, sha256: \"{}\", source: {{file: {file}}}}}\n",
            "ab".repeat(32)
        )
    };
    let dir = manifests(
        "plugin-zero",
        &[(
            "all.yaml",
            &format!(
                "{POOL}{}{}{}",
                service("a"),
                plugin("zero", "/dev/zero"),
                plugin("big", "big.wasm")
            ),
        )],
    );
    std::fs::File::create(dir.join("big.wasm"))
        .unwrap()
        .set_len((64 << 20) + 1)
        .unwrap();
    let out = herald_bounded(&["plan", dir.to_str().unwrap(), "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let messages: Vec<&str> = plan["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("/dev/zero") && m.contains("not a regular file")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("big.wasm") && m.contains("larger than 64 MiB")),
        "{messages:?}"
    );
    assert_eq!(plan["services"][0]["ips"][0], "198.51.100.0");
}

#[test]
fn hostile_values_are_refused_naming_the_object() {
    rejects(
        "no-name",
        "apiVersion: herald.dev/v1alpha1\nkind: IPPool\nmetadata: {}\nspec: {addresses: [198.51.100.0/24]}\n",
        &[
            "bad.yaml",
            "document 1 (IPPool)",
            "metadata.name is missing",
        ],
    );
    rejects(
        "null-port",
        "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: a}\nspec: {type: LoadBalancer, ports: [{port: null}]}\n",
        &[
            "Service \"a/s\"",
            "spec.ports[0].port",
            "missing, null or 0",
        ],
    );
    rejects(
        "protocol",
        "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: a}\nspec: {type: LoadBalancer, ports: [{port: 80, protocol: ICMP}]}\n",
        &["Service \"a/s\"", "spec.ports[0].protocol", "ICMP"],
    );
    rejects(
        "no-ports",
        "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: a}\nspec: {type: LoadBalancer}\n",
        &["Service \"a/s\"", "spec.ports", "at least one port"],
    );
}

#[test]
fn a_byte_order_mark_is_not_a_document() {
    let dir = manifests(
        "bom",
        &[("all.yaml", &format!("\u{feff}{POOL}{}", service("a")))],
    );
    let out = herald(&["plan", dir.to_str().unwrap(), "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(plan["services"][0]["ips"][0], "198.51.100.0");
}

#[test]
fn pools_holding_reserved_addresses_are_invalid_and_hand_out_nothing() {
    let dir = manifests(
        "reserved",
        &[(
            "all.yaml",
            &format!(
                "apiVersion: herald.dev/v1alpha1\nkind: IPPool\nmetadata: {{name: p}}\nspec: {{addresses: [127.0.0.0/30]}}\n{}",
                service("a")
            ),
        )],
    );
    let out = herald(&["plan", dir.to_str().unwrap(), "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(plan["services"][0]["ips"], serde_json::json!([]));
    assert_eq!(plan["errors"][0]["name"], "p");
    let message = plan["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("loopback"), "{message}");
}
