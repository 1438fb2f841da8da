//! The two contenders: how each is installed (CRDs, an equivalent pool) and
//! started, and the client the benchmark itself uses.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use herald_control_plane::ControlPlane;
use herald_netns::{Error, Result};

/// Herald's pool: 65,536 addresses of 2001:db8:1::/112.
const HERALD_POOL: &str = "2001:db8:1::/112";
/// MetalLB's pool: the same size, next to Herald's.
const METALLB_POOL: &str = "2001:db8:2::/112";
/// The namespace MetalLB's controller reads its configuration from.
const METALLB_NAMESPACE: &str = "metallb-system";

/// Which controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `herald controller`.
    Herald,
    /// MetalLB's `controller`.
    MetalLb,
}

impl Kind {
    /// The name in reports and namespaces.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Herald => "herald",
            Kind::MetalLb => "metallb",
        }
    }
}

/// A controller under test.
#[derive(Debug)]
pub struct Contender {
    /// Which one.
    pub kind: Kind,
    /// The `loadBalancerClass` it serves (and the benchmark's Services of
    /// its rounds carry).
    pub class: &'static str,
    program: PathBuf,
    crds: Option<PathBuf>,
}

impl Contender {
    /// `herald controller` from the `herald` binary at `program`.
    pub fn herald(program: &Path) -> Contender {
        Contender {
            kind: Kind::Herald,
            class: "herald.dev/bench",
            program: program.to_owned(),
            crds: None,
        }
    }

    /// MetalLB's controller from the directory scripts/metallb-build.sh
    /// prints.
    pub fn metallb(bin: &Path) -> Contender {
        Contender {
            kind: Kind::MetalLb,
            class: "metallb.io/bench",
            program: bin.join("metallb-controller"),
            crds: Some(bin.join("../crds")),
        }
    }

    /// Installs the contender's CRDs and its pool.
    pub fn install(&self, cp: &ControlPlane) -> Result<()> {
        match self.kind {
            Kind::Herald => {
                let crds = Command::new(&self.program)
                    .arg("crds")
                    .output()
                    .map_err(|e| Error(format!("{} crds: {e}", self.program.display())))?;
                if !crds.status.success() {
                    return Err(Error(format!("{} crds failed", self.program.display())));
                }
                let crds = String::from_utf8_lossy(&crds.stdout);
                cp.kubectl_with_input(&["apply", "--server-side", "-f", "-"], Some(&crds))?;
            }
            Kind::MetalLb => {
                let dir = self.crds.as_ref().expect("MetalLB has CRDs");
                cp.kubectl(&[
                    "apply",
                    "--server-side",
                    "-f",
                    dir.to_str().expect("a UTF-8 path"),
                ])?;
            }
        }
        cp.kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd",
            "--all",
        ])?;
        let pool = match self.kind {
            Kind::Herald => format!(
                "apiVersion: herald.dev/v1alpha1\nkind: IPPool\nmetadata: {{name: bench}}\nspec:\n  addresses: [\"{HERALD_POOL}\"]\n"
            ),
            Kind::MetalLb => {
                cp.kubectl(&["create", "namespace", METALLB_NAMESPACE])?;
                format!(
                    "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: bench, namespace: {METALLB_NAMESPACE}}}\nspec:\n  addresses: [\"{METALLB_POOL}\"]\n"
                )
            }
        };
        cp.kubectl_with_input(&["apply", "-f", "-"], Some(&pool))?;
        Ok(())
    }

    /// Starts the controller as the admin of `cp`, logging to `log`, with
    /// its warnings only (both log every address at their default level);
    /// it dies with the calling thread (`setpriv --pdeathsig KILL`, which
    /// execs it, so the child's PID is the controller's).
    pub fn start(&self, cp: &ControlPlane, log: &Path) -> Result<Child> {
        let file = std::fs::File::create(log).map_err(|e| Error(e.to_string()))?;
        let err = file.try_clone().map_err(|e| Error(e.to_string()))?;
        let mut command = Command::new("setpriv");
        command
            .args(["--pdeathsig", "KILL", "--"])
            .arg(&self.program)
            .env("KUBECONFIG", cp.kubeconfig());
        match self.kind {
            Kind::Herald => {
                command
                    .args(["controller", "--load-balancer-class", self.class])
                    .env("HERALD_LOG", "warn");
            }
            Kind::MetalLb => {
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .map_err(|e| Error(e.to_string()))?
                    .port();
                command.args([
                    &format!("--namespace={METALLB_NAMESPACE}"),
                    &format!("--lb-class={}", self.class),
                    &format!("--port={port}"),
                    // No webhook: nothing here would call it, and it
                    // needs a serving certificate and a Service.
                    "--webhook-mode=disabled",
                    "--disable-cert-rotation",
                    "--log-level=warn",
                ]);
            }
        }
        command
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|e| Error(format!("starting {}: {e}", self.program.display())))
    }
}

/// A client for the admin's kubeconfig at `path`.
pub async fn client(path: &Path) -> Result<kube::Client> {
    let kubeconfig =
        kube::config::Kubeconfig::read_from(path).map_err(|e| Error(format!("kubeconfig: {e}")))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| Error(format!("kubeconfig: {e}")))?;
    kube::Client::try_from(config).map_err(|e| Error(format!("client: {e}")))
}
