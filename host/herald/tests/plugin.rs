//! `herald plugin check|bench` and `herald plan` with Wasm policies, as a
//! user runs them, on the components ./scripts/build-plugins.sh built.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn plugin(name: &str) -> PathBuf {
    let dir = std::env::var_os("HERALD_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/plugins"));
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing; build the plugins first: ./scripts/build-plugins.sh",
        path.display()
    );
    path
}

fn herald(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        .current_dir(repo())
        .env("HERALD_LOG", "error")
        .output()
        .expect("run herald")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn check(args: &[&str]) -> (i32, String) {
    let mut all = vec!["plugin", "check"];
    all.extend_from_slice(args);
    let out = herald(&all);
    (out.status.code().expect("exited, not killed"), text(&out))
}

#[test]
fn check_accepts_every_example_plugin_and_shows_a_sample_call() {
    for (name, world, sample) in [
        ("stable-hash", "allocator", "shop/web -> 198.51.100."),
        ("zone-spread", "announcer", "L2 198.51.100.7 over 6 nodes"),
        ("endpoint-weighted", "announcer", "Bgp 198.51.100.7"),
        ("dsr-loopback", "cni-chain", "actions"),
    ] {
        let p = plugin(name);
        let (code, out) = check(&[p.to_str().unwrap()]);
        assert_eq!(code, 0, "{name}: {out}");
        assert!(
            out.contains(&format!("world:   herald:policy/{world}@0.1.0")),
            "{out}"
        );
        assert!(out.contains(sample), "{name}: {out}");
        assert!(!out.contains("wasi:filesystem"), "{out}");
    }
}

#[test]
fn check_says_precisely_what_is_wrong_and_never_panics() {
    let dir = std::env::temp_dir().join(format!("herald-plugin-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text_file = dir.join("notes.wasm");
    std::fs::write(&text_file, "hello").unwrap();
    let core = dir.join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let zs = plugin("zone-spread");
    let zs = zs.to_str().unwrap();
    let hostile = |n: &str| plugin(&format!("hostile-{n}")).to_str().unwrap().to_owned();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![text_file.display().to_string()],
            "not WebAssembly at all",
        ),
        (vec![core.display().to_string()], "core WebAssembly module"),
        (
            vec![dir.join("absent.wasm").display().to_string()],
            "absent.wasm",
        ),
        (
            vec![hostile("forbidden-import")],
            "wasi:filesystem/preopens",
        ),
        (
            vec![hostile("wrong-world"), "--world".into(), "announcer".into()],
            "it implements the allocator world (exports herald:policy/allocate@0.1.0), not announcer",
        ),
        (
            vec![zs.into(), "--world".into(), "allocator".into()],
            "it implements the announcer world (exports herald:policy/announce@0.1.0), not allocator",
        ),
        (
            vec![zs.into(), "--config".into(), r#"{"zone":1}"#.into()],
            "unknown field `zone`",
        ),
        (
            vec![zs.into(), "--config".into(), "{".into()],
            "--config is not JSON",
        ),
        (vec![hostile("trap")], "hostile plugin panics on purpose"),
        (vec![hostile("infinite-loop")], "ran out of time"),
        (vec![hostile("unknown-node")], "\"no-such-node\""),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out) = check(&args);
        assert_eq!(code, 1, "{args:?}: {out}");
        assert!(out.contains(want), "{args:?}: wanted {want:?} in\n{out}");
        assert!(!out.contains("panicked at host"), "{out}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bench_measures_a_plugin_beside_the_built_in_policy() {
    let p = plugin("zone-spread");
    let out = herald(&[
        "plugin",
        "bench",
        p.to_str().unwrap(),
        "--iterations",
        "50",
        "--nodes",
        "50",
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    for want in [
        "load: first",
        "cached",
        "instantiate",
        "L2 announce over 50 nodes",
        "built-in",
        "decisions per second",
    ] {
        assert!(t.contains(want), "{want}: {t}");
    }
}

/// An allocator measured over a pool and a number of Services of the
/// user's choosing, with the limits its PolicyPlugin would set.
#[test]
fn bench_takes_a_pool_services_and_the_plugin_s_limits() {
    let p = plugin("stable-hash");
    let out = herald(&[
        "plugin",
        "bench",
        p.to_str().unwrap(),
        "--iterations",
        "3",
        "--pool",
        "2001:db8::/112",
        "--services",
        "50",
        "--timeout-ms",
        "500",
        "--memory-limit-mib",
        "32",
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("allocation per Service (50 Services, pool 2001:db8::/112)"),
        "{t}"
    );
    let (code, t) = check(&[p.to_str().unwrap(), "--timeout-ms", "0"]);
    assert_eq!(code, 2, "a limit out of range is a usage error: {t}");
}

/// A plugin whose every decision fails has no decision rate: bench says
/// why and exits non-zero.
#[test]
fn bench_of_a_plugin_that_always_fails_exits_non_zero() {
    let p = plugin("hostile-trap");
    let out = herald(&["plugin", "bench", p.to_str().unwrap(), "--iterations", "5"]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("trapped"), "{t}");
    assert!(!t.contains("decisions per second"), "{t}");
}

/// A component cut short is named as such, not as a section range.
#[test]
fn check_says_a_truncated_component_is_truncated() {
    let bytes = std::fs::read(plugin("zone-spread")).unwrap();
    let dir = std::env::temp_dir().join(format!("herald-plugin-trunc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for cut in [1000, bytes.len() / 2, bytes.len() - 100] {
        let f = dir.join(format!("cut-{cut}.wasm"));
        std::fs::write(&f, &bytes[..cut]).unwrap();
        let (code, t) = check(&[f.to_str().unwrap()]);
        assert_ne!(code, 0, "{t}");
        assert!(t.contains("the file is truncated"), "{cut}: {t}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A GitOps tree with a pool whose addresses the stable-hash plugin picks.
fn tree(name: &str, digest: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("herald-plan-plugin-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("plugins")).unwrap();
    std::fs::copy(plugin("stable-hash"), dir.join("plugins/stable-hash.wasm")).unwrap();
    let manifests = format!(
        "apiVersion: herald.dev/v1alpha1
kind: PolicyPlugin
metadata: {{name: stable}}
spec:
  world: allocator
  sha256: \"{digest}\"
  source: {{file: plugins/stable-hash.wasm}}
---
apiVersion: herald.dev/v1alpha1
kind: IPPool
metadata: {{name: hashed}}
spec:
  addresses: [198.51.100.0/24]
  allocatorPlugin: stable
---
apiVersion: herald.dev/v1alpha1
kind: IPPool
metadata: {{name: plain}}
spec:
  addresses: [203.0.113.0/24]
  allocation: {{namespaces: [legacy]}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: shop}}
spec: {{type: LoadBalancer, ports: [{{port: 80}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: api, namespace: shop}}
spec: {{type: LoadBalancer, ports: [{{port: 80}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: old, namespace: legacy, annotations: {{herald.dev/pool: plain}}}}
spec: {{type: LoadBalancer, ports: [{{port: 80}}]}}
"
    );
    std::fs::write(dir.join("all.yaml"), manifests).unwrap();
    dir
}

#[test]
fn plan_runs_wasm_policies_and_shows_which_plugin_decided() {
    let bytes = std::fs::read(plugin("stable-hash")).unwrap();
    let digest: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = tree("good", &digest);
    let out = herald(&["plan", dir.to_str().unwrap(), "-o", "json"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["errors"], serde_json::json!([]), "{t}");
    let rows = plan["services"].as_array().unwrap();
    let row = |ns: &str, n: &str| {
        rows.iter()
            .find(|r| r["namespace"] == ns && r["name"] == n)
            .unwrap_or_else(|| panic!("{ns}/{n} in {t}"))
    };
    assert_eq!(row("shop", "web")["plugin"], "stable");
    assert_eq!(row("shop", "api")["plugin"], "stable");
    assert_eq!(row("legacy", "old")["plugin"], serde_json::Value::Null);
    assert_eq!(row("legacy", "old")["ips"][0], "203.0.113.0");
    // Not the lowest free address: the hash's.
    let web = row("shop", "web")["ips"][0].as_str().unwrap().to_owned();
    assert_ne!(web, "198.51.100.0");
    // The same manifests give the same addresses every time.
    let again = herald(&["plan", dir.to_str().unwrap(), "-o", "json"]);
    assert_eq!(again.stdout, out.stdout);

    let table = herald(&["plan", dir.to_str().unwrap()]);
    let t = text(&table);
    assert!(t.lines().next().unwrap().contains("PLUGIN"), "{t}");
    assert!(
        t.contains(&format!("shop/web      {web}")) || t.contains(&web),
        "{t}"
    );
    assert!(
        t.lines()
            .any(|l| l.starts_with("shop/web") && l.contains("stable")),
        "{t}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn plan_reports_a_plugin_that_does_not_load_and_falls_back() {
    let dir = tree("bad-digest", &"0".repeat(64));
    let out = herald(&["plan", dir.to_str().unwrap(), "-o", "json"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors = plan["errors"].as_array().unwrap();
    assert!(
        errors.iter().any(|e| e["kind"] == "PolicyPlugin"
            && e["name"] == "stable"
            && e["message"].as_str().unwrap().contains("sha256 mismatch")),
        "{t}"
    );
    // The pool's plugin is not loaded: the built-in policy decides.
    assert!(
        errors
            .iter()
            .any(|e| e["kind"] == "IPPool"
                && e["message"].as_str().unwrap().contains("is not loaded")),
        "{t}"
    );
    for r in plan["services"].as_array().unwrap() {
        assert_eq!(r["plugin"], serde_json::Value::Null);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
