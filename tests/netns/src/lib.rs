//! The network-namespace harness of Herald's integration tests: hosts as
//! network namespaces, links as veth pairs, segments as bridges, daemons as
//! processes, all removed again when their guards drop, also when a test
//! fails (panics unwind through the guards).
//!
//! Files a test writes (configurations, manifests, logs) go into a
//! [`TempDir`], removed the same way.
//!
//! Safety rules (the project's network rules): tests use only documentation
//! prefixes (198.51.100.0/24, 203.0.113.0/24, 192.0.2.0/24, 2001:db8::/32)
//! inside namespaces they made; this harness never adds a default route.
//! Needs root and `ip` (iproute2). A program a test starts that is not
//! installed is an error naming its Debian package ([`installed`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A failed harness step: the command and what it printed.
#[derive(Debug)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// Harness result.
pub type Result<T> = std::result::Result<T, Error>;

/// The Debian package each program the tests run comes from, as
/// `scripts/test.sh` installs it (FRR's daemons are started by path, from
/// `/usr/lib/frr`).
const PACKAGES: &[(&str, &str)] = &[
    ("arping", "iputils-arping"),
    ("bgpd", "frr"),
    ("bird", "bird2"),
    ("birdc", "bird2"),
    ("gobgp", "gobgpd"),
    ("gobgpd", "gobgpd"),
    ("ip", "iproute2"),
    ("keepalived", "keepalived"),
    ("ndisc6", "ndisc6"),
    ("nft", "nftables"),
    ("ping", "iputils-ping"),
    ("rdisc6", "ndisc6"),
    ("socat", "socat"),
    ("ss", "iproute2"),
    ("tcpdump", "tcpdump"),
    ("vtysh", "frr"),
    ("watchfrr", "frr"),
    ("zebra", "frr"),
];

/// Checks that `program` can be started: an executable file at that path
/// when it names one (has a `/`), else one found in `PATH`. The error
/// names the program and, for the programs the test command installs, the Debian
/// package to install: a missing daemon is said at once instead of
/// surfacing later as a timeout.
pub fn installed(program: &str) -> Result<()> {
    let found = if program.contains('/') {
        executable(Path::new(program))
    } else {
        std::env::var_os("PATH").is_some_and(|paths| {
            std::env::split_paths(&paths).any(|dir| executable(&dir.join(program)))
        })
    };
    if found {
        return Ok(());
    }
    let name = Path::new(program)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(program);
    Err(Error(
        match PACKAGES.iter().find(|(known, _)| *known == name) {
            Some((_, package)) => format!(
                "{program} is not installed: scripts/test.sh installs it with the Debian package {package}"
            ),
            None if program.contains('/') => format!("{program} is not an executable file"),
            None => format!("{program} is not installed (not found in PATH)"),
        },
    ))
}

/// Whether `path` is a file someone may execute.
fn executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs a command to completion; non-zero exit is an error with its output.
pub fn run(program: &str, args: &[&str]) -> Result<Output> {
    installed(program)?;
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error(format!("{program} {}: {e}", args.join(" "))))?;
    if !out.status.success() {
        return Err(Error(format!(
            "{program} {} failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(out)
}

/// A short name unique in this machine for this process: `{prefix}{pid}x{n}`,
/// kept within the 15 bytes Linux allows interface names.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("{prefix}{}x{n}", std::process::id() % 100_000);
    assert!(
        name.len() <= 15,
        "interface name {name:?} is longer than 15 bytes"
    );
    name
}

/// A directory of a test's own under the system's temporary directory, for
/// the configurations, manifests and logs of the processes it starts;
/// removed with everything in it when dropped, also when a test fails.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates the empty directory `{prefix}{pid}x{n}` (a name from
    /// [`unique`]) in the system's temporary directory.
    pub fn new(prefix: &str) -> Result<TempDir> {
        let path = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir(&path).map_err(|e| Error(format!("{}: {e}", path.display())))?;
        Ok(TempDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` inside the directory.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A network namespace, deleted (with every process still in it killed)
/// when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace named `{prefix}{pid}x{n}` with loopback up.
    pub fn new(prefix: &str) -> Result<Netns> {
        let name = unique(prefix);
        run("ip", &["netns", "add", &name])?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME ARGS…`.
    pub fn ip(&self, args: &[&str]) -> Result<Output> {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Runs a command inside the namespace to completion.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<Output> {
        installed(program)?;
        let mut all = vec!["netns", "exec", &self.name, program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Runs a command inside the namespace and returns its output whatever
    /// its exit status (for probes that are expected to fail sometimes).
    pub fn probe(&self, program: &str, args: &[&str]) -> Result<Output> {
        installed(program)?;
        Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error(format!("{program} in {}: {e}", self.name)))
    }

    /// Starts a long-running process inside the namespace; it is killed
    /// when the returned guard drops. Output goes to `log` when given. The
    /// program (and the one `env VAR=… PROGRAM` runs) must be installed.
    pub fn spawn(&self, program: &str, args: &[&str], log: Option<&Path>) -> Result<Process> {
        installed(program)?;
        if program == "env"
            && let Some(wrapped) = args
                .iter()
                .find(|a| !a.contains('=') && !a.starts_with('-'))
        {
            installed(wrapped)?;
        }
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program])
            .args(args)
            .stdin(Stdio::null());
        match log {
            Some(path) => {
                let file = std::fs::File::create(path)
                    .map_err(|e| Error(format!("{}: {e}", path.display())))?;
                let err = file.try_clone().map_err(|e| Error(e.to_string()))?;
                cmd.stdout(file).stderr(err);
            }
            None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        let child = cmd
            .spawn()
            .map_err(|e| Error(format!("{program} in {}: {e}", self.name)))?;
        Ok(Process {
            child,
            what: format!("{program} in {}", self.name),
        })
    }

    /// Sets a sysctl inside the namespace (`net.ipv4.conf.all.arp_ignore=1`).
    pub fn sysctl(&self, key_value: &str) -> Result<()> {
        self.exec("sysctl", &["-q", "-w", key_value]).map(drop)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Kill what is still running inside (daemons that forked away from
        // their guard), then delete the namespace.
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Connects two namespaces with a veth pair (`a_if` in `a`, `b_if` in `b`),
/// both ends up. Returns nothing to clean: deleting either namespace
/// deletes the pair.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    let tmp_a = unique("va");
    let tmp_b = unique("vb");
    run(
        "ip",
        &[
            "link", "add", &tmp_a, "type", "veth", "peer", "name", &tmp_b,
        ],
    )?;
    run(
        "ip",
        &["link", "set", &tmp_a, "netns", a.name(), "name", a_if],
    )?;
    run(
        "ip",
        &["link", "set", &tmp_b, "netns", b.name(), "name", b_if],
    )?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])?;
    Ok(())
}

/// A shared segment: a bridge `br0` in its own namespace. [`Segment::attach`]
/// plugs a host in through a veth pair.
#[derive(Debug)]
pub struct Segment {
    ns: Netns,
    ports: AtomicU32,
}

impl Segment {
    /// Creates the switch namespace and its bridge.
    pub fn new() -> Result<Segment> {
        let ns = Netns::new("sw")?;
        ns.ip(&["link", "add", "br0", "type", "bridge"])?;
        ns.ip(&["link", "set", "br0", "up"])?;
        Ok(Segment {
            ns,
            ports: AtomicU32::new(0),
        })
    }

    /// The switch's namespace (to take a port down: `ip link set PORT down`).
    pub fn switch(&self) -> &Netns {
        &self.ns
    }

    /// Plugs `host` in as interface `host_if`; returns the switch port name.
    pub fn attach(&self, host: &Netns, host_if: &str) -> Result<String> {
        let port = format!("p{}", self.ports.fetch_add(1, Ordering::Relaxed));
        veth(&self.ns, &port, host, host_if)?;
        self.ns.ip(&["link", "set", &port, "master", "br0"])?;
        Ok(port)
    }
}

/// A process started by a test, killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct Process {
    child: Child,
    what: String,
}

impl Process {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `KILL`) to the process.
    pub fn signal(&self, signal: &str) -> Result<()> {
        run(
            "kill",
            &[&format!("-{signal}"), &self.child.id().to_string()],
        )
        .map(drop)
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| Error(e.to_string()))? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(Error(format!(
                    "{} did not exit within {timeout:?}",
                    self.what
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every `every` until it returns `Some`, at most `timeout`;
/// the error says what was awaited. The bounded wait the project's tests
/// use instead of sleeps.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(Error(format!(
                "timed out after {timeout:?} waiting for {what}"
            )));
        }
        std::thread::sleep(every);
    }
}

/// What tcpdump (`-nn -vvv`) prints for `packets`, bare IPv4 packets
/// written to a capture file (pcap, LINKTYPE_RAW) one per record: a second,
/// independent decoder for the bytes Herald sends.
pub fn tcpdump(packets: &[Vec<u8>]) -> Result<String> {
    let mut pcap = Vec::new();
    pcap.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    pcap.extend_from_slice(&2u16.to_le_bytes());
    pcap.extend_from_slice(&4u16.to_le_bytes());
    pcap.extend_from_slice(&[0; 8]);
    pcap.extend_from_slice(&65535u32.to_le_bytes());
    pcap.extend_from_slice(&101u32.to_le_bytes());
    for (i, packet) in packets.iter().enumerate() {
        let len = u32::try_from(packet.len()).map_err(|e| Error(e.to_string()))?;
        let seconds = u32::try_from(i).map_err(|e| Error(e.to_string()))?;
        pcap.extend_from_slice(&seconds.to_le_bytes());
        pcap.extend_from_slice(&0u32.to_le_bytes());
        pcap.extend_from_slice(&len.to_le_bytes());
        pcap.extend_from_slice(&len.to_le_bytes());
        pcap.extend_from_slice(packet);
    }
    let dir = TempDir::new("hpcap")?;
    let path = dir.join("packets.pcap");
    std::fs::write(&path, pcap).map_err(|e| Error(format!("{}: {e}", path.display())))?;
    let out = run("tcpdump", &["-nn", "-vvv", "-r", &path.to_string_lossy()])?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_hosts_on_a_segment_reach_each_other_and_vanish_afterwards() {
        let a = Netns::new("ha").unwrap();
        let b = Netns::new("hb").unwrap();
        let seg = Segment::new().unwrap();
        seg.attach(&a, "eth0").unwrap();
        seg.attach(&b, "eth0").unwrap();
        a.ip(&["addr", "add", "192.0.2.1/24", "dev", "eth0"])
            .unwrap();
        b.ip(&["addr", "add", "192.0.2.2/24", "dev", "eth0"])
            .unwrap();
        wait_for(
            "a ping from a to b",
            Duration::from_secs(5),
            Duration::from_millis(50),
            || {
                a.probe("ping", &["-c", "1", "-W", "1", "192.0.2.2"])
                    .ok()
                    .filter(|o| o.status.success())
            },
        )
        .unwrap();
        let names = [
            a.name().to_owned(),
            b.name().to_owned(),
            seg.switch().name().to_owned(),
        ];
        drop((a, b, seg));
        let listed = String::from_utf8(run("ip", &["netns", "list"]).unwrap().stdout).unwrap();
        for n in names {
            assert!(!listed.contains(&n), "{n} was not removed");
        }
    }

    #[test]
    fn temp_dirs_are_distinct_and_removed_with_their_contents() {
        let a = TempDir::new("htd").unwrap();
        let b = TempDir::new("htd").unwrap();
        assert_ne!(a.path(), b.path());
        std::fs::create_dir(a.join("manifests")).unwrap();
        std::fs::write(a.join("manifests").join("x.yaml"), "x").unwrap();
        let path = a.path().to_owned();
        assert!(path.starts_with(std::env::temp_dir()), "{path:?}");
        drop(a);
        assert!(!path.exists(), "{path:?} was not removed");
        assert!(b.path().is_dir());
    }

    #[test]
    fn a_missing_program_is_named_with_its_package_at_once() {
        let ns = Netns::new("hm").unwrap();
        let started = Instant::now();
        let e = ns.spawn("/nonexistent/bird", &["-f"], None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/nonexistent/bird is not installed: scripts/test.sh installs it with the Debian package bird2"
        );
        let e = ns
            .spawn("env", &["RUST_LOG=info", "/usr/lib/frr-none/zebra"], None)
            .unwrap_err();
        assert!(e.to_string().contains("Debian package frr"), "{e}");
        let e = ns.exec("herald-no-such-program", &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "herald-no-such-program is not installed (not found in PATH)"
        );
        let e = ns.probe("herald-no-such-program", &[]).unwrap_err();
        assert!(e.to_string().contains("not installed"), "{e}");
        let e = run("/nonexistent/gobgp", &[]).unwrap_err();
        assert!(e.to_string().contains("Debian package gobgpd"), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "took {:?}",
            started.elapsed()
        );
        // What the tests use is found, by name or by path.
        installed("ip").unwrap();
        installed("/bin/sh").unwrap();
    }

    #[test]
    fn processes_are_killed_with_their_guard() {
        let ns = Netns::new("hp").unwrap();
        let p = ns.spawn("sleep", &["600"], None).unwrap();
        let pid = p.pid();
        drop(p);
        assert!(
            !Path::new(&format!("/proc/{pid}/cmdline")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| s.contains(" Z "))
                    .unwrap_or(true)
        );
    }
}
