//! A real Kubernetes control plane for Herald's tests: etcd and
//! kube-apiserver, built from their published Go modules by
//! `scripts/control-plane-build.sh`, started on loopback on free ports in a
//! temporary directory, with generated certificates (openssl), a
//! service-account signing key, `--authorization-mode=Node,RBAC`, an admin
//! identity (group `system:masters`) and a kubeconfig for it. No fake or
//! in-process API server anywhere.
//!
//! One control plane per test binary ([`shared`]); tests isolate themselves
//! by namespace and object names. Its processes are started with
//! `setpriv --pdeathsig KILL` from a thread that lives as long as the test
//! binary, so they die with the binary however it ends (a failed test
//! included); a [`ControlPlane`] of a test's own ([`ControlPlane::start`])
//! kills them by PID when dropped.
//!
//! Faults, for a control plane a test owns ([`ControlPlane::start_with`]
//! takes extra kube-apiserver flags): [`ControlPlane::kill_apiserver`]
//! (SIGKILL by PID) and [`ControlPlane::restart_apiserver`] on the same
//! etcd, port and certificates; [`ControlPlane::compact_etcd`] (etcd's v3
//! JSON gateway); and a [`Relay`] in front of the API server that ends or
//! cuts its clients' connections while kubectl keeps talking to the API
//! server directly.
//!
//! Addresses: everything listens on 127.0.0.1. The Service ClusterIP
//! ranges the API server hands out are documentation prefixes
//! ([`SERVICE_CIDRS`]); no traffic is ever sent to them.
//!
//! [`herald`] has what the kube tests share on Herald's side: a running
//! `herald controller`, a test's namespace and pools, reading a Service's
//! status.
//!
//! Depends on std, herald-netns and serde_json only. Needs `go` (the build
//! script), `openssl` and `setpriv` (util-linux).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use herald_netns::{Error, Result, TempDir, run, wait_for};

pub mod herald;
mod relay;
pub use relay::Relay;

/// The ClusterIP ranges of the test cluster (dual-stack): documentation
/// prefixes, so that no address the API server allocates can be anyone's.
/// Tests keep their load-balancer pools out of them.
pub const SERVICE_CIDRS: &str = "203.0.113.0/24,2001:db8:ffff::/112";

/// How long the API server may take to become ready (a cold start on a
/// loaded two-core machine takes about ten seconds).
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// A running etcd and kube-apiserver, and what a client needs to reach
/// them.
#[derive(Debug)]
pub struct ControlPlane {
    dir: TempDir,
    bin: PathBuf,
    etcd: Child,
    etcd_url: String,
    /// Behind a lock so that a test can kill and restart it while other
    /// threads use the control plane.
    apiserver: Mutex<Child>,
    apiserver_args: Vec<String>,
    port: u16,
    server: String,
}

/// The directory holding `kube-apiserver`, `kubectl` and `etcd`:
/// `HERALD_CONTROL_PLANE_BIN`, else what `scripts/control-plane-build.sh`
/// prints (it builds them on the first run on a machine, then reuses them).
pub fn binaries() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("HERALD_CONTROL_PLANE_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/control-plane-build.sh");
    let out = run(script.to_str().expect("a UTF-8 path"), &[])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let dir = text
        .lines()
        .last()
        .ok_or_else(|| Error(format!("{} printed nothing", script.display())))?;
    Ok(PathBuf::from(dir.trim()))
}

/// A free TCP port on 127.0.0.1 (bound, then released for the server).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Error(e.to_string()))?;
    Ok(l.local_addr().map_err(|e| Error(e.to_string()))?.port())
}

/// `openssl ARGS…` in `dir`.
fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error(format!("openssl: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error(format!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

/// `openssl req` arguments for a new P-256 key without a passphrase
/// (faster to make than RSA, and every client here takes it).
const NEW_EC_KEY: &[&str] = &[
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// A certificate signed by the test CA: `{name}.crt` and `{name}.key`.
fn certificate(dir: &Path, name: &str, subject: &str, extensions: &str) -> Result<()> {
    let ext = format!("{name}.ext");
    std::fs::write(dir.join(&ext), extensions).map_err(|e| Error(e.to_string()))?;
    let (key, csr, crt) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
    );
    openssl(
        dir,
        &[
            &["req"],
            NEW_EC_KEY,
            &["-keyout", &key, "-out", &csr, "-subj", subject],
        ]
        .concat(),
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &crt,
            "-extfile",
            &ext,
        ],
    )
}

/// The CA, the API server's serving certificate, the admin's client
/// certificate and the service-account key pair.
fn credentials(dir: &Path) -> Result<()> {
    openssl(
        dir,
        &[
            &["req", "-x509"],
            NEW_EC_KEY,
            &["-keyout", "ca.key", "-out", "ca.crt", "-days", "2"],
            &["-subj", "/CN=herald-test-ca"],
        ]
        .concat(),
    )?;
    certificate(
        dir,
        "apiserver",
        "/CN=kube-apiserver",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )?;
    certificate(
        dir,
        "admin",
        "/O=system:masters/CN=herald-admin",
        "extendedKeyUsage=clientAuth\n",
    )?;
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-out",
            "sa.key",
        ],
    )?;
    openssl(dir, &["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"])
}

/// Starts `program` so that it dies with the thread that started it
/// (`setpriv --pdeathsig KILL`), appending to `log`.
fn spawn(program: &Path, args: &[String], log: &Path) -> Result<Child> {
    let file = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| Error(e.to_string()))?;
    let err = file.try_clone().map_err(|e| Error(e.to_string()))?;
    Command::new("setpriv")
        .arg("--pdeathsig")
        .arg("KILL")
        .arg("--")
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .spawn()
        .map_err(|e| Error(format!("starting {}: {e}", program.display())))
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver and waits until the API server
    /// answers `/readyz`. The processes die with the calling thread (and are
    /// killed when this is dropped).
    pub fn start() -> Result<ControlPlane> {
        ControlPlane::start_with(&[])
    }

    /// [`ControlPlane::start`] with `flags` added to kube-apiserver's (for
    /// a test's own control plane: `--watch-cache=false`, so that watches
    /// are served by etcd and an etcd compaction expires them).
    pub fn start_with(flags: &[&str]) -> Result<ControlPlane> {
        let bin = binaries()?;
        for b in ["etcd", "kube-apiserver", "kubectl"] {
            if !bin.join(b).exists() {
                return Err(Error(format!(
                    "{} is missing: run scripts/control-plane-build.sh",
                    bin.join(b).display()
                )));
            }
        }
        let dir = TempDir::new("hcp")?;
        credentials(dir.path())?;
        let (client, peer, secure) = (free_port()?, free_port()?, free_port()?);
        let etcd_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let etcd = spawn(
            &bin.join("etcd"),
            &[
                "--name=herald-test".to_owned(),
                format!("--data-dir={}", dir.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=herald-test={peer_url}"),
                "--log-level=warn".to_owned(),
                // A test's data need not survive a power cut.
                "--unsafe-no-fsync".to_owned(),
            ],
            &dir.join("etcd.log"),
        )?;
        let d = |name: &str| dir.join(name).display().to_string();
        let mut apiserver_args = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--secure-port={secure}"),
            format!("--tls-cert-file={}", d("apiserver.crt")),
            format!("--tls-private-key-file={}", d("apiserver.key")),
            format!("--client-ca-file={}", d("ca.crt")),
            format!("--service-account-key-file={}", d("sa.pub")),
            format!("--service-account-signing-key-file={}", d("sa.key")),
            "--service-account-issuer=https://kubernetes.default.svc".to_owned(),
            "--authorization-mode=Node,RBAC".to_owned(),
            format!("--service-cluster-ip-range={SERVICE_CIDRS}"),
            // The `kubernetes` Service's endpoints would be 127.0.0.1,
            // which Endpoints validation refuses: not reconciled.
            "--endpoint-reconciler-type=none".to_owned(),
            "--profiling=false".to_owned(),
        ];
        apiserver_args.extend(flags.iter().map(|f| (*f).to_owned()));
        let apiserver = spawn(
            &bin.join("kube-apiserver"),
            &apiserver_args,
            &dir.join("kube-apiserver.log"),
        )?;
        let server = format!("https://127.0.0.1:{secure}");
        let cp = ControlPlane {
            dir,
            bin,
            etcd,
            etcd_url,
            apiserver: Mutex::new(apiserver),
            apiserver_args,
            port: secure,
            server,
        };
        std::fs::write(cp.kubeconfig(), cp.kubeconfig_for(&cp.server))
            .map_err(|e| Error(e.to_string()))?;
        cp.wait_ready()?;
        Ok(cp)
    }

    /// A kubeconfig of the admin identity for the API server at `server`.
    fn kubeconfig_for(&self, server: &str) -> String {
        let d = |name: &str| self.dir.join(name).display().to_string();
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: herald-test\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\nusers:\n- name: admin\n  user:\n    client-certificate: {crt}\n    client-key: {key}\ncontexts:\n- name: herald-test\n  context: {{cluster: herald-test, user: admin}}\ncurrent-context: herald-test\n",
            ca = d("ca.crt"),
            crt = d("admin.crt"),
            key = d("admin.key"),
        )
    }

    /// Waits until the API server answers `/readyz`.
    fn wait_ready(&self) -> Result<()> {
        let ready = wait_for(
            "kube-apiserver /readyz",
            READY_TIMEOUT,
            Duration::from_millis(200),
            || {
                self.kubectl(&["get", "--raw", "/readyz"])
                    .ok()
                    .filter(|o| String::from_utf8_lossy(&o.stdout).trim() == "ok")
            },
        );
        ready
            .map(drop)
            .map_err(|e| Error(format!("{e}\n{}", self.logs())))
    }

    /// The API server's address (`127.0.0.1:PORT`), for a [`Relay`].
    pub fn address(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// A kubeconfig of the admin identity that reaches the API server
    /// through `relay` (the serving certificate names 127.0.0.1, so TLS
    /// holds through it).
    pub fn kubeconfig_via(&self, relay: &Relay) -> Result<PathBuf> {
        let path = self
            .dir
            .join(format!("kubeconfig-via-{}", relay.address().port()));
        std::fs::write(&path, self.kubeconfig_for(&relay.url()))
            .map_err(|e| Error(e.to_string()))?;
        Ok(path)
    }

    /// Kills kube-apiserver (SIGKILL, by PID) and reaps it; etcd keeps
    /// running. Clients see their connections reset and new ones refused.
    pub fn kill_apiserver(&self) -> Result<()> {
        let mut apiserver = self.apiserver.lock().unwrap_or_else(|e| e.into_inner());
        apiserver
            .kill()
            .and_then(|()| apiserver.wait().map(drop))
            .map_err(|e| Error(format!("killing kube-apiserver: {e}")))
    }

    /// Starts kube-apiserver again with the same flags (same etcd, port and
    /// certificates) and waits until it answers `/readyz`. Its log goes on
    /// in the same file. Call it from the thread that started this control
    /// plane: the new process dies with the calling thread.
    pub fn restart_apiserver(&self) -> Result<()> {
        let started = spawn(
            &self.bin.join("kube-apiserver"),
            &self.apiserver_args,
            &self.dir.join("kube-apiserver.log"),
        )?;
        *self.apiserver.lock().unwrap_or_else(|e| e.into_inner()) = started;
        self.wait_ready()
    }

    /// Compacts etcd's history up to its current revision (physically,
    /// through etcd's v3 JSON gateway) and returns that revision: a watch
    /// that resumes from an older `resourceVersion` and is served by etcd
    /// (`--watch-cache=false`) is answered 410 Gone.
    pub fn compact_etcd(&self) -> Result<u64> {
        // Any range answers with the store's current revision.
        let range = self.etcd_post("/v3/kv/range", r#"{"key":"Lw==","count_only":true}"#)?;
        let revision = json_revision(&range)
            .ok_or_else(|| Error(format!("no revision in etcd's answer: {range}")))?;
        self.etcd_post(
            "/v3/kv/compaction",
            &format!(r#"{{"revision":"{revision}","physical":true}}"#),
        )?;
        Ok(revision)
    }

    /// POSTs `body` to etcd's JSON gateway at `path`; returns the answer's
    /// body, or an error with it when the status is not 200. HTTP/1.0, so
    /// the answer is never chunked.
    fn etcd_post(&self, path: &str, body: &str) -> Result<String> {
        use std::io::{Read as _, Write as _};
        let address = self
            .etcd_url
            .strip_prefix("http://")
            .expect("etcd listens on plain HTTP on loopback");
        let mut stream =
            std::net::TcpStream::connect(address).map_err(|e| Error(format!("etcd: {e}")))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| Error(e.to_string()))?;
        write!(
            stream,
            "POST {path} HTTP/1.0\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .map_err(|e| Error(format!("etcd: {e}")))?;
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .map_err(|e| Error(format!("etcd: {e}")))?;
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        if head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200") {
            Ok(body.to_owned())
        } else {
            Err(Error(format!("etcd POST {path}: {answer}")))
        }
    }

    /// The kubeconfig of the admin identity.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// A kubeconfig for the ServiceAccount `namespace/name` (which must
    /// exist), with a token the API server issues for it: to test what an
    /// identity with less than the admin's rights sees.
    pub fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> Result<PathBuf> {
        let token = self.kubectl(&["create", "token", "-n", namespace, name])?;
        let token = String::from_utf8_lossy(&token.stdout);
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: \"{}\", certificate-authority: \"{}\"}}\nusers:\n- name: u\n  user: {{token: \"{}\"}}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
            self.server,
            self.dir.join("ca.crt").display(),
            token.trim()
        );
        let path = self.dir.join(format!("{namespace}-{name}.kubeconfig"));
        std::fs::write(&path, text).map_err(|e| Error(e.to_string()))?;
        Ok(path)
    }

    /// The API server's URL (`https://127.0.0.1:PORT`).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// `kubectl ARGS…` as the admin; non-zero exit is an error with its
    /// output.
    pub fn kubectl(&self, args: &[&str]) -> Result<Output> {
        self.kubectl_with_input(args, None)
    }

    /// `kubectl ARGS…` with `input` on its standard input.
    pub fn kubectl_with_input(&self, args: &[&str], input: Option<&str>) -> Result<Output> {
        use std::io::Write as _;
        let mut child = Command::new(self.bin.join("kubectl"))
            .arg(format!("--kubeconfig={}", self.kubeconfig().display()))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error(format!("kubectl: {e}")))?;
        let mut stdin = child.stdin.take().expect("piped");
        if let Some(input) = input {
            stdin
                .write_all(input.as_bytes())
                .map_err(|e| Error(format!("kubectl stdin: {e}")))?;
        }
        drop(stdin);
        let out = child
            .wait_with_output()
            .map_err(|e| Error(format!("kubectl: {e}")))?;
        if !out.status.success() {
            return Err(Error(format!(
                "kubectl {} failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(out)
    }

    /// Installs the CRDs `HERALD crds` prints (server-side) and waits until
    /// they are Established. `herald` is the path of the built `herald`
    /// binary.
    pub fn install_crds(&self, herald: &str) -> Result<()> {
        let crds = Command::new(herald)
            .arg("crds")
            .output()
            .map_err(|e| Error(format!("{herald} crds: {e}")))?;
        if !crds.status.success() {
            return Err(Error(format!("{herald} crds failed ({})", crds.status)));
        }
        let crds = String::from_utf8_lossy(&crds.stdout);
        self.kubectl_with_input(&["apply", "--server-side", "-f", "-"], Some(&crds))?;
        self.kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd",
            "--all",
        ])
        .map(drop)
    }

    /// The last lines of etcd's and the API server's logs, for failure
    /// messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for name in ["etcd.log", "kube-apiserver.log"] {
            let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(30)..];
            out.push_str(&format!(
                "--- {name} (last lines) ---\n{}\n",
                tail.join("\n")
            ));
        }
        out
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let apiserver = self.apiserver.get_mut().unwrap_or_else(|e| e.into_inner());
        for child in [apiserver, &mut self.etcd] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `"revision":"N"` of an etcd JSON answer's header.
fn json_revision(text: &str) -> Option<u64> {
    let rest = text.split_once(r#""revision":""#)?.1;
    rest.split('"').next()?.parse().ok()
}

/// Removes the directories of shared control planes whose test binary has
/// exited (`hcp{pid}x{n}`, the pid modulo 100,000 as
/// [`herald_netns::unique`] writes it): no such process, and untouched for
/// an hour (a live one writes its logs and etcd data all the time).
fn remove_stale_directories() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("hcp")
            .and_then(|rest| rest.split('x').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let idle = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(3600));
        if idle && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The control plane of this test binary, started on first use from a
/// thread that lives as long as the binary: its processes die with the
/// binary (their parent-death signal), however the binary ends. Its
/// temporary directory is left behind at exit (a few MiB under the system's
/// temporary directory, named `hcp…`) and removed by the next start once
/// the process that made it is gone.
pub fn shared() -> &'static ControlPlane {
    static SHARED: OnceLock<ControlPlane> = OnceLock::new();
    SHARED.get_or_init(|| {
        remove_stale_directories();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("control-plane".to_owned())
            .spawn(move || {
                let _ = tx.send(ControlPlane::start());
                // The parent of the processes: it must outlive every test.
                loop {
                    std::thread::park();
                }
            })
            .expect("a thread");
        match rx.recv() {
            Ok(Ok(cp)) => cp,
            Ok(Err(e)) => panic!("cannot start the control plane: {e}"),
            Err(_) => panic!("the control plane thread died"),
        }
    })
}

/// The shared control plane with the CRDs `HERALD crds` prints installed
/// (server-side, once per test binary) and Established. `herald` is the
/// path of the built `herald` binary (`env!("CARGO_BIN_EXE_herald")` in
/// the caller's tests).
pub fn with_crds(herald: &str) -> &'static ControlPlane {
    static ONCE: std::sync::Once = std::sync::Once::new();
    let cp = shared();
    ONCE.call_once(|| cp.install_crds(herald).unwrap_or_else(|e| panic!("{e}")));
    cp
}
