//! The switch from MetalLB on a real kube-apiserver (tests/control-plane):
//! the objects `herald import metallb` writes pass the API server's CRD
//! validation; Services whose status was written as MetalLB writes it keep
//! their addresses when `herald controller` starts on the imported objects,
//! and every held address gets its `IPAllocation`.
//!
//! The controller is the built `herald` binary, run as a child process
//! killed when the test ends (its log is shown on failure). This binary
//! has a control plane of its own, so the imported cluster-wide pools meet
//! no other test's.
//!
//! Needs go, openssl and setpriv (scripts/test.sh; the control plane is
//! built once per machine by scripts/control-plane-build.sh).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use herald_control_plane::ControlPlane;
use herald_control_plane::herald::Controller;
use herald_netns::{TempDir, wait_for};
use serde_json::Value;

/// The built `herald` binary.
const HERALD: &str = env!("CARGO_BIN_EXE_herald");

/// How long the controller may take to record what it found.
const SETTLE: Duration = Duration::from_secs(30);
/// How often kubectl looks while waiting.
const POLL: Duration = Duration::from_millis(200);

fn with_crds() -> &'static ControlPlane {
    herald_control_plane::with_crds(env!("CARGO_BIN_EXE_herald"))
}

fn kubectl(cp: &ControlPlane, args: &[&str], input: Option<&str>) -> String {
    let out = cp
        .kubectl_with_input(args, input)
        .unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"));
    String::from_utf8(out.stdout).unwrap()
}

/// The Services MetalLB served, by namespace/name, with the address it
/// wrote and the labels that admit them to their pools.
const SERVICES: [(&str, &str, &str, &str); 4] = [
    ("payments", "api", "198.51.100.130", "{}"),
    ("shop", "web", "198.51.100.1", "{}"),
    ("red", "frontend", "203.0.113.7", "{tier: frontend}"),
    // A pool with autoAssign: false, not named by the Service.
    ("shop", "legacy", "192.0.2.3", "{}"),
];

fn ingress(cp: &ControlPlane, ns: &str, name: &str) -> Vec<String> {
    let svc: Value = serde_json::from_str(&kubectl(
        cp,
        &["get", "svc", "-n", ns, name, "-o", "json"],
        None,
    ))
    .unwrap();
    svc["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn switching_from_metallb_moves_no_address_and_records_every_one() {
    let cp = with_crds();
    let out = TempDir::new("himpout").unwrap();
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/import/crds");
    let run = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["import", "metallb"])
        .arg(&input)
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    // The API server's validation of the CRDs accepts every object, first
    // without storing them, then for real.
    let dir = out.path().to_str().unwrap();
    let dry = kubectl(cp, &["apply", "--dry-run=server", "-f", dir], None);
    let objects = std::fs::read_dir(out.path())
        .unwrap()
        .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap())
        .map(|text| text.matches("\nkind: ").count())
        .sum::<usize>();
    assert_eq!(objects, 11, "the import wrote every object");
    assert_eq!(
        dry.lines()
            .filter(|l| l.ends_with("(server dry run)"))
            .count(),
        objects,
        "{dry}"
    );
    kubectl(cp, &["apply", "-f", dir], None);

    for (ns, labels) in [("payments", "{}"), ("red", "{team: red}"), ("shop", "{}")] {
        kubectl(
            cp,
            &["apply", "-f", "-"],
            Some(&format!(
                "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {labels}}}\n"
            )),
        );
    }
    // Services as MetalLB left them: created, then the address written to
    // status by the load balancer controller.
    for (ns, name, ip, labels) in SERVICES {
        kubectl(
            cp,
            &["apply", "-f", "-"],
            Some(&format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}, labels: {labels}}}\nspec:\n  type: LoadBalancer\n  ports: [{{port: 80}}]\n"
            )),
        );
        kubectl(
            cp,
            &[
                "patch",
                "svc",
                "-n",
                ns,
                name,
                "--subresource=status",
                "--type=merge",
                "-p",
                &format!(
                    r#"{{"status":{{"loadBalancer":{{"ingress":[{{"ip":"{ip}","ipMode":"VIP"}}]}}}}}}"#
                ),
            ],
            None,
        );
        assert_eq!(ingress(cp, ns, name), [ip]);
    }

    let controller = Controller::start(HERALD, &cp.kubeconfig());
    let want: BTreeMap<String, String> = SERVICES
        .iter()
        .map(|(ns, name, ip, _)| (ip.to_string(), format!("{ns}/{name}")))
        .collect();
    let recorded = wait_for(
        "an IPAllocation for every held address",
        SETTLE,
        POLL,
        || {
            let list: Value =
                serde_json::from_str(&kubectl(cp, &["get", "ipallocations", "-o", "json"], None))
                    .ok()?;
            let got: BTreeMap<String, String> = list["items"]
                .as_array()?
                .iter()
                .map(|a| {
                    let s = &a["spec"]["services"][0];
                    (
                        a["spec"]["address"].as_str().unwrap_or_default().to_owned(),
                        format!(
                            "{}/{}",
                            s["namespace"].as_str().unwrap_or_default(),
                            s["name"].as_str().unwrap_or_default()
                        ),
                    )
                })
                .collect();
            (got.len() >= want.len()).then_some(got)
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n--- controller log ---\n{}", controller.log()));
    assert_eq!(recorded, want, "{}", controller.log());
    for (ns, name, ip, _) in SERVICES {
        assert_eq!(ingress(cp, ns, name), [ip], "{ns}/{name} moved");
    }
    assert!(!controller.log().contains("ERROR"), "{}", controller.log());
}
