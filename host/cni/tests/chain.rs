//! `herald-cni` in a real chain: Debian's `bridge` and `host-local`
//! (package `containernetworking-plugins`), then `herald-cni`, in one
//! conflist, invoked the way libcni invokes a network list (see
//! [`Runtime`]). The "node" is a network namespace holding the bridge;
//! pods are network namespaces. Addresses: 192.0.2.0/24 for pods,
//! 203.0.113.0/24 for VIPs.
//!
//! Needs root, iproute2, iputils-arping and containernetworking-plugins.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use herald_netns::{Netns, TempDir};
use serde_json::{Value, json};

/// Where Debian installs the reference plugins.
const DEBIAN_CNI_DIR: &str = "/usr/lib/cni";

/// The version of the chain: the newest Debian's plugins (1.1.1) speak.
const CNI_VERSION: &str = "1.0.0";

const VIP: &str = "203.0.113.10";

/// A CNI invocation's exit and stdout (parsed when it is JSON).
#[derive(Debug)]
struct Invocation {
    ok: bool,
    stdout: String,
}

impl Invocation {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", self.stdout))
    }

    /// The error object's code, asserting the invocation failed.
    fn error_code(&self) -> u64 {
        assert!(
            !self.ok,
            "expected a CNI error, got success: {}",
            self.stdout
        );
        let error = self.json();
        assert!(
            error["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "{error}"
        );
        error["code"].as_u64().unwrap_or_else(|| panic!("{error}"))
    }
}

/// A container runtime's side of CNI, reproducing libcni's documented
/// rules for a network list (`AddNetworkList`, `CheckNetworkList`,
/// `DelNetworkList`): each plugin gets its own configuration with the
/// list's `name` and `cniVersion` injected; on ADD, every plugin after the
/// first gets the previous plugin's result as `prevResult`, and the last
/// result is cached; CHECK runs the plugins in order and DEL in reverse,
/// each with the cached result as `prevResult` (omitted on DEL when there
/// is none). The same environment (`CNI_COMMAND`, `CNI_CONTAINERID`,
/// `CNI_NETNS`, `CNI_IFNAME`, `CNI_ARGS`, `CNI_PATH`) for every plugin; a
/// plugin is found by its `type` in `CNI_PATH`. The first failure stops
/// the list. Plugins run inside the node's namespace.
struct Runtime {
    node: Netns,
    dir: TempDir,
    conflist: Value,
    cni_path: String,
    cache: std::collections::BTreeMap<String, Value>,
}

/// One pod: its namespace and `CNI_ARGS`.
struct Pod {
    netns: Netns,
    container_id: String,
    args: String,
}

impl Pod {
    fn new(namespace: &str, name: &str) -> Pod {
        let netns = Netns::new("cpod").unwrap();
        Pod {
            container_id: format!("ctr-{}", netns.name()),
            args: format!("IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name}"),
            netns,
        }
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.netns.name())
    }

    /// `ip -j addr show dev DEV` as (address, prefix) pairs.
    fn addresses(&self, dev: &str) -> Vec<String> {
        let out = self.netns.ip(&["-j", "addr", "show", "dev", dev]).unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array()
            .into_iter()
            .flatten()
            .flat_map(|link| link["addr_info"].as_array().cloned().unwrap_or_default())
            .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
            .collect()
    }

    fn sysctl(&self, dev: &str, key: &str) -> String {
        let out = self
            .netns
            .exec("cat", &[&format!("/proc/sys/net/ipv4/conf/{dev}/{key}")])
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Runtime {
    /// A node with the conflist bridge + host-local + herald-cni, and a
    /// state file listing `dsr_pods` as (namespace, name) with [`VIP`].
    fn new(dsr_pods: &[(&str, &str)]) -> Runtime {
        for plugin in ["bridge", "host-local"] {
            assert!(
                Path::new(DEBIAN_CNI_DIR).join(plugin).exists(),
                "{DEBIAN_CNI_DIR}/{plugin} missing: apt-get install containernetworking-plugins"
            );
        }
        let node = Netns::new("cnode").unwrap();
        let dir = TempDir::new("hcni").unwrap();
        let state = json!({
            "pods": dsr_pods.iter().map(|(ns, name)| json!({
                "namespace": ns, "name": name, "vips": [VIP]
            })).collect::<Vec<_>>()
        });
        std::fs::write(dir.join("state.json"), state.to_string()).unwrap();
        let conflist = json!({
            "cniVersion": CNI_VERSION,
            "name": "heraldnet",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "hbr0",
                    "isGateway": true,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": dir.join("ipam"),
                        "ranges": [[{ "subnet": "192.0.2.0/24" }]]
                    }
                },
                { "type": "herald-cni", "stateFile": dir.join("state.json") }
            ]
        });
        let herald_dir = PathBuf::from(env!("CARGO_BIN_EXE_herald-cni"))
            .parent()
            .unwrap()
            .to_owned();
        Runtime {
            node,
            dir,
            conflist,
            cni_path: format!("{DEBIAN_CNI_DIR}:{}", herald_dir.display()),
            cache: Default::default(),
        }
    }

    fn state_file(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// The plugin executable for `type`, searched in `CNI_PATH`.
    fn find(&self, kind: &str) -> PathBuf {
        self.cni_path
            .split(':')
            .map(|d| Path::new(d).join(kind))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("plugin {kind} not in {}", self.cni_path))
    }

    /// One plugin invocation, inside the node's namespace.
    fn exec(&self, kind: &str, env: &[(&str, &str)], stdin: &[u8]) -> Invocation {
        let plugin = self.find(kind);
        let mut child = Command::new("ip")
            .args(["netns", "exec", self.node.name()])
            .arg(&plugin)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("CNI_PATH", &self.cni_path)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut input = child.stdin.take().unwrap();
            input.write_all(stdin).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        Invocation {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        }
    }

    /// A plugin's configuration as libcni builds it.
    fn plugin_config(&self, index: usize, prev_result: Option<&Value>) -> Value {
        let mut config = self.conflist["plugins"][index].clone();
        config["name"] = self.conflist["name"].clone();
        config["cniVersion"] = self.conflist["cniVersion"].clone();
        if let Some(prev) = prev_result {
            config["prevResult"] = prev.clone();
        }
        config
    }

    fn plugins(&self) -> usize {
        self.conflist["plugins"].as_array().unwrap().len()
    }

    fn env<'a>(command: &'a str, pod: &'a Pod, netns: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", &pod.container_id),
            ("CNI_NETNS", netns),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", &pod.args),
        ]
    }

    /// ADD over the list; returns each plugin's invocation (the list stops
    /// at the first failure).
    fn add(&mut self, pod: &Pod) -> Vec<Invocation> {
        let netns = pod.path();
        let mut prev: Option<Value> = None;
        let mut done = Vec::new();
        for i in 0..self.plugins() {
            let config = self.plugin_config(i, prev.as_ref());
            let kind = config["type"].as_str().unwrap().to_owned();
            let inv = self.exec(
                &kind,
                &Self::env("ADD", pod, &netns),
                config.to_string().as_bytes(),
            );
            let ok = inv.ok;
            if ok {
                prev = Some(inv.json());
            }
            done.push(inv);
            if !ok {
                return done;
            }
        }
        if let Some(result) = prev {
            self.cache.insert(pod.container_id.clone(), result);
        }
        done
    }

    /// CHECK over the list, in order, with the cached result.
    fn check(&self, pod: &Pod) -> Result<(), Invocation> {
        let netns = pod.path();
        let cached = self.cache.get(&pod.container_id);
        for i in 0..self.plugins() {
            let config = self.plugin_config(i, cached);
            let kind = config["type"].as_str().unwrap().to_owned();
            let inv = self.exec(
                &kind,
                &Self::env("CHECK", pod, &netns),
                config.to_string().as_bytes(),
            );
            if !inv.ok {
                return Err(inv);
            }
        }
        Ok(())
    }

    /// DEL over the list, in reverse, with the cached result when there is
    /// one; the cache entry goes when every plugin succeeded.
    fn del(&mut self, pod: &Pod) -> Result<(), Invocation> {
        let netns = pod.path();
        let cached = self.cache.get(&pod.container_id).cloned();
        for i in (0..self.plugins()).rev() {
            let config = self.plugin_config(i, cached.as_ref());
            let kind = config["type"].as_str().unwrap().to_owned();
            let inv = self.exec(
                &kind,
                &Self::env("DEL", pod, &netns),
                config.to_string().as_bytes(),
            );
            if !inv.ok {
                return Err(inv);
            }
        }
        self.cache.remove(&pod.container_id);
        Ok(())
    }

    /// herald-cni alone, with `config` on stdin and `env` (not the list).
    fn herald(&self, env: &[(&str, &str)], stdin: &[u8]) -> Invocation {
        self.exec("herald-cni", env, stdin)
    }
}

/// Adds `pod` and asserts every plugin succeeded; returns the bridge's
/// result and herald-cni's.
fn add_ok(runtime: &mut Runtime, pod: &Pod) -> (Value, Value) {
    let done = runtime.add(pod);
    for inv in &done {
        assert!(inv.ok, "ADD failed: {}", inv.stdout);
    }
    assert_eq!(done.len(), 2);
    (done[0].json(), done[1].json())
}

/// Every interface of the node with its IPv4 addresses (IPv6 link-local
/// addresses change state on their own while DAD runs).
fn node_addresses(node: &Netns) -> Vec<(String, Vec<String>)> {
    let out = node.ip(&["-j", "-4", "addr"]).unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .into_iter()
        .flatten()
        .map(|link| {
            let addrs = link["addr_info"].as_array().cloned().unwrap_or_default();
            (
                link["ifname"].as_str().unwrap_or("").to_owned(),
                addrs
                    .iter()
                    .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or(""), a["prefixlen"]))
                    .collect(),
            )
        })
        .collect()
}

fn pod_address(result: &Value) -> String {
    result["ips"][0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no address in {result}"))
        .to_owned()
}

#[test]
fn a_dsr_pod_gets_its_bridge_address_and_the_vip_on_lo_and_del_removes_it_twice() {
    let mut runtime = Runtime::new(&[("shop", "web-0")]);
    let pod = Pod::new("shop", "web-0");

    let (bridge, herald) = add_ok(&mut runtime, &pod);
    assert_eq!(
        herald, bridge,
        "herald-cni must pass the previous result on unchanged"
    );
    let address = pod_address(&bridge);
    assert!(address.starts_with("192.0.2."), "{address}");
    assert!(pod.addresses("eth0").contains(&address), "{address}");
    assert!(
        pod.addresses("lo").contains(&format!("{VIP}/32")),
        "{:?}",
        pod.addresses("lo")
    );
    for dev in ["all", "eth0"] {
        assert_eq!(pod.sysctl(dev, "arp_ignore"), "1", "{dev}");
        assert_eq!(pod.sysctl(dev, "arp_announce"), "2", "{dev}");
    }
    runtime
        .check(&pod)
        .unwrap_or_else(|e| panic!("CHECK: {e:?}"));

    // The pod answers ARP for its own address but not for the VIP: only
    // the announcing node may.
    let own = address.split('/').next().unwrap();
    let arping = |target: &str| {
        runtime
            .node
            .probe("arping", &["-c", "2", "-w", "3", "-I", "hbr0", target])
            .unwrap()
            .status
            .success()
    };
    assert!(arping(own), "the pod does not answer ARP for {own}");
    assert!(!arping(VIP), "the pod answers ARP for the VIP {VIP}");

    // CHECK notices the VIP gone.
    pod.netns
        .ip(&["addr", "del", &format!("{VIP}/32"), "dev", "lo"])
        .unwrap();
    let failed = runtime.check(&pod).unwrap_err();
    assert_eq!(failed.error_code(), 101);
    assert!(failed.stdout.contains(VIP), "{}", failed.stdout);
    // herald-cni's ADD may be repeated: it puts the VIP back.
    let config = runtime.plugin_config(1, Some(&bridge));
    let again = runtime.herald(
        &Runtime::env("ADD", &pod, &pod.path()),
        config.to_string().as_bytes(),
    );
    assert!(again.ok, "{}", again.stdout);
    runtime
        .check(&pod)
        .unwrap_or_else(|e| panic!("CHECK: {e:?}"));

    // DEL removes what herald-cni added even once the state file no
    // longer lists the pod, and nothing another program put on lo.
    std::fs::write(runtime.state_file(), r#"{"pods":[]}"#).unwrap();
    pod.netns
        .ip(&["addr", "add", "198.51.100.7/32", "dev", "lo"])
        .unwrap();
    runtime.del(&pod).unwrap_or_else(|e| panic!("DEL: {e:?}"));
    assert_eq!(
        pod.addresses("lo"),
        vec!["127.0.0.1/8", "198.51.100.7/32", "::1/128"]
    );
    runtime
        .del(&pod)
        .unwrap_or_else(|e| panic!("second DEL: {e:?}"));
}

#[test]
fn a_pod_behind_no_dsr_service_gets_nothing() {
    let mut runtime = Runtime::new(&[("shop", "web-0")]);
    let pods = [Pod::new("shop", "web-1"), {
        let mut p = Pod::new("", "");
        p.args = String::new();
        p
    }];
    for pod in &pods {
        let lo_before = pod.addresses("lo");
        let (bridge, herald) = add_ok(&mut runtime, pod);
        assert_eq!(herald, bridge);
        assert!(pod.addresses("eth0").contains(&pod_address(&bridge)));
        assert_eq!(pod.addresses("lo"), lo_before);
        assert_eq!(pod.sysctl("all", "arp_ignore"), "0");
        assert_eq!(pod.sysctl("eth0", "arp_announce"), "0");
        runtime
            .check(pod)
            .unwrap_or_else(|e| panic!("CHECK: {e:?}"));
        runtime.del(pod).unwrap_or_else(|e| panic!("DEL: {e:?}"));
    }
}

#[test]
fn version_status_and_gc() {
    let runtime = Runtime::new(&[]);
    let version = runtime.herald(
        &[("CNI_COMMAND", "VERSION")],
        json!({"cniVersion": CNI_VERSION}).to_string().as_bytes(),
    );
    assert!(version.ok, "{}", version.stdout);
    let versions = version.json()["supportedVersions"].clone();
    assert_eq!(versions, json!(["1.0.0", "1.1.0"]));

    let config = |extra: Value| {
        let mut c = runtime.plugin_config(1, None);
        c["cniVersion"] = json!("1.1.0");
        if let Value::Object(extra) = extra {
            c.as_object_mut().unwrap().extend(extra);
        }
        c.to_string()
    };
    let status = runtime.herald(&[("CNI_COMMAND", "STATUS")], config(json!({})).as_bytes());
    assert!(status.ok && status.stdout.is_empty(), "{status:?}");
    let gc = runtime.herald(
        &[("CNI_COMMAND", "GC")],
        config(json!({"cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}]}))
            .as_bytes(),
    );
    assert!(gc.ok && gc.stdout.is_empty(), "{gc:?}");

    // A state file that cannot be read: STATUS says the plugin cannot
    // serve an ADD.
    std::fs::write(runtime.state_file(), "{\"pods\": [").unwrap();
    let status = runtime.herald(&[("CNI_COMMAND", "STATUS")], config(json!({})).as_bytes());
    assert_eq!(status.error_code(), 50);
}

#[test]
fn bad_input_gives_the_spec_code_and_changes_nothing() {
    let runtime = Runtime::new(&[("shop", "web-0")]);
    let pod = Pod::new("shop", "web-0");
    // A real previous result, from the bridge alone.
    let bridge = runtime.exec(
        "bridge",
        &Runtime::env("ADD", &pod, &pod.path()),
        runtime.plugin_config(0, None).to_string().as_bytes(),
    );
    assert!(bridge.ok, "{}", bridge.stdout);
    let prev = bridge.json();
    let lo_before = pod.addresses("lo");
    let node_before = node_addresses(&runtime.node);

    let good = runtime.plugin_config(1, Some(&prev));
    let with = |key: &str, value: Value| {
        let mut c = good.clone();
        c[key] = value;
        c.to_string()
    };
    let without_prev = {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove("prevResult");
        c.to_string()
    };
    let path = pod.path();
    let cases: Vec<(&str, String, String, u64)> = vec![
        ("not JSON", path.clone(), "{\"cniVersion\":".into(), 6),
        (
            "stateFile missing",
            path.clone(),
            with("stateFile", Value::Null),
            7,
        ),
        ("no prevResult", path.clone(), without_prev, 7),
        (
            "unknown cniVersion",
            path.clone(),
            with("cniVersion", json!("0.4.0")),
            1,
        ),
        (
            "CNI_NETNS does not exist",
            "/run/netns/herald-cni-no-such-pod".into(),
            good.to_string(),
            3,
        ),
        (
            "CNI_NETNS is not a namespace",
            runtime.state_file().display().to_string(),
            good.to_string(),
            4,
        ),
        (
            "CNI_NETNS is relative",
            "run/netns/x".into(),
            good.to_string(),
            4,
        ),
    ];
    for (what, netns, stdin, code) in cases {
        let inv = runtime.herald(&Runtime::env("ADD", &pod, &netns), stdin.as_bytes());
        assert_eq!(inv.error_code(), code, "{what}: {}", inv.stdout);
        assert_eq!(pod.addresses("lo"), lo_before, "{what} changed the pod");
        assert_eq!(
            pod.sysctl("all", "arp_ignore"),
            "0",
            "{what} changed the pod"
        );
    }
    assert_eq!(
        node_addresses(&runtime.node),
        node_before,
        "bad input changed the node"
    );
    // The same attachment with good input works: the failures were the
    // input's.
    let inv = runtime.herald(
        &Runtime::env("ADD", &pod, &path),
        good.to_string().as_bytes(),
    );
    assert!(inv.ok, "{}", inv.stdout);
    assert_eq!(inv.json(), prev);
    assert!(pod.addresses("lo").contains(&format!("{VIP}/32")));
}
