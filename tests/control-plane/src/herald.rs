//! Herald on the test control plane: a running `herald controller` (a
//! child process killed on drop, its log shown when a test fails), a
//! test's namespace and pools (deleted when the test ends), and reading
//! what the controller wrote on a Service. Shared by the kube test files of
//! `host/herald`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use herald_netns::{TempDir, wait_for};
use serde_json::Value;

use crate::ControlPlane;

/// How long the cluster may take to show what the controller decided.
pub const SETTLE: Duration = Duration::from_secs(30);
/// How often kubectl looks while waiting.
pub const POLL: Duration = Duration::from_millis(200);

/// One controller at a time in a test binary (each binary has its own
/// lock): a controller serves every namespace.
static SERIAL: Mutex<()> = Mutex::new(());

/// Takes the test binary's one-controller-at-a-time lock (also after a test
/// panicked holding it: the next test starts clean anyway).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running `herald controller`, killed on drop.
pub struct Controller {
    child: Child,
    log: PathBuf,
    _dir: TempDir,
}

impl Controller {
    /// Starts `herald controller` (`herald`: the binary's path) against
    /// the cluster of `kubeconfig`, logging at debug for herald-k8s.
    pub fn start(herald: &str, kubeconfig: &Path) -> Controller {
        let dir = TempDir::new("hctl").unwrap();
        let log = dir.path().join("controller.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(herald)
            .arg("controller")
            .env("KUBECONFIG", kubeconfig)
            .env("HERALD_LOG", "info,herald_k8s=debug")
            // A Lease of its own: the one a killed predecessor held would
            // keep it waiting for the term to run out.
            .env("HERALD_LEASE_NAME", herald_netns::unique("ctl"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start herald controller");
        Controller {
            child,
            log,
            _dir: dir,
        }
    }

    /// The controller's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for `what` to hold, failing with the controller's log.
    pub fn wait<T>(&self, what: &str, check: impl FnMut() -> Option<T>) -> T {
        wait_for(what, SETTLE, POLL, check)
            .unwrap_or_else(|e| panic!("{e}\n--- controller log ---\n{}", self.log()))
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- controller log ---\n{}", self.log());
        }
    }
}

/// A test's namespace and pools, deleted when the test ends.
pub struct Scope {
    /// The control plane.
    pub cp: &'static ControlPlane,
    /// The namespace, also the prefix of the test's object names.
    pub namespace: String,
    /// Pools to delete at the end.
    pub pools: Vec<String>,
}

impl Scope {
    /// Creates the namespace `namespace`.
    pub fn new(cp: &'static ControlPlane, namespace: &str) -> Scope {
        cp.kubectl(&["create", "namespace", namespace])
            .unwrap_or_else(|e| panic!("{e}"));
        Scope {
            cp,
            namespace: namespace.to_owned(),
            pools: Vec::new(),
        }
    }

    /// An IPPool that serves this namespace only.
    pub fn pool(&mut self, name: &str, addresses: &str) {
        let yaml = format!(
            "apiVersion: herald.dev/v1alpha1\nkind: IPPool\nmetadata: {{name: {name}}}\nspec:\n  addresses: [\"{addresses}\"]\n  allocation: {{namespaces: [{ns}]}}\n",
            ns = self.namespace
        );
        self.apply(&yaml);
        self.pools.push(name.to_owned());
    }

    /// A Service of type LoadBalancer in this namespace.
    pub fn service(&self, name: &str) {
        let yaml = format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  type: LoadBalancer\n  ports: [{{port: 80}}]\n",
            ns = self.namespace
        );
        self.apply(&yaml);
    }

    /// `kubectl apply` of `yaml`.
    pub fn apply(&self, yaml: &str) {
        self.cp
            .kubectl_with_input(&["apply", "-f", "-"], Some(yaml))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Deletes the Service `name` of this namespace.
    pub fn delete_service(&self, name: &str) {
        self.cp
            .kubectl(&["delete", "service", "-n", &self.namespace, name])
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// The Service as JSON (`None`: not there).
    pub fn get_service(&self, name: &str) -> Option<Value> {
        let out = self
            .cp
            .kubectl(&["get", "service", "-n", &self.namespace, name, "-o", "json"])
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The IPAllocation named after `address` (`None`: not there).
    pub fn record(&self, address: &str) -> Option<Value> {
        let name = address.replace(['.', ':'], "-");
        let out = self
            .cp
            .kubectl(&[
                "get",
                "ipallocation",
                &name,
                "-o",
                "json",
                "--ignore-not-found",
            ])
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let _ = self
            .cp
            .kubectl(&["delete", "namespace", &self.namespace, "--wait=false"]);
        for pool in &self.pools {
            let _ = self.cp.kubectl(&["delete", "ippool", pool, "--wait=false"]);
        }
    }
}

/// The addresses of a Service's `status.loadBalancer.ingress`.
pub fn ingress(svc: &Value) -> Vec<String> {
    svc["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str().map(str::to_owned))
        .collect()
}

/// Herald's condition on a Service.
pub fn condition(svc: &Value) -> Option<Value> {
    svc["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "herald.dev/Allocated")
        .cloned()
}
