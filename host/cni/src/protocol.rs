//! The CNI protocol (specification 1.0 and 1.1, "Section 3: Execution
//! Protocol" and "Section 5: Result Types") as a pure function: the
//! environment and stdin in, a [`Request`] or an [`Error`] out; and the
//! reply out as stdout bytes and an exit code ([`Outcome`]). No I/O here.
//!
//! Input is read leniently where the spec lets other plugins vary:
//! unknown configuration fields are ignored (the spec allows rejecting
//! them; a chained plugin sharing a conflist with others should not), and
//! `prevResult` is kept as the JSON object it is — every field, known or
//! not — and passed on unchanged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::{Error, Result};

/// The spec versions this plugin speaks, oldest first (VERSION's
/// `supportedVersions`). 1.0.0 is the first with today's result format;
/// 1.1.0 adds STATUS and GC.
pub const SUPPORTED_VERSIONS: [&str; 2] = ["1.0.0", "1.1.0"];

/// The newest supported version: VERSION's reply and errors raised before
/// the configuration's own version is known use it.
pub const LATEST_VERSION: &str = "1.1.0";

/// Where a pod runs: `K8S_POD_NAMESPACE` and `K8S_POD_NAME` from `CNI_ARGS`
/// (the keys Kubernetes runtimes pass).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodRef {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
}

/// The container attachment ADD and CHECK act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`: an absolute path.
    pub netns: PathBuf,
    /// `CNI_IFNAME`: the pod's interface, validated as a Linux interface
    /// name.
    pub ifname: String,
    /// The pod, when `CNI_ARGS` names it.
    pub pod: Option<PodRef>,
}

/// The plugin's network configuration, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `cniVersion`, one of [`SUPPORTED_VERSIONS`].
    pub cni_version: String,
    /// `name`, the network's name.
    pub name: String,
    /// `stateFile`: the absolute path of the node-local state file
    /// (crate [`crate::state`]).
    pub state_file: PathBuf,
}

/// One invocation, validated.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// `VERSION`.
    Version,
    /// `ADD`, with the previous plugin's result.
    Add {
        /// The attachment.
        attachment: Attachment,
        /// The configuration.
        config: Config,
        /// `prevResult`, exactly as received.
        prev_result: Value,
    },
    /// `CHECK`, with the result of the ADD.
    Check {
        /// The attachment.
        attachment: Attachment,
        /// The configuration.
        config: Config,
        /// `prevResult`, exactly as received.
        prev_result: Value,
    },
    /// `DEL`: `CNI_NETNS` may be absent (the spec lets runtimes omit it
    /// once the sandbox is gone) and so may `prevResult`.
    Del {
        /// `CNI_CONTAINERID`.
        container_id: String,
        /// `CNI_NETNS`, when given.
        netns: Option<PathBuf>,
        /// `CNI_IFNAME`.
        ifname: String,
        /// The configuration.
        config: Config,
    },
    /// `STATUS` (1.1): can the plugin serve an ADD now?
    Status {
        /// The configuration.
        config: Config,
    },
    /// `GC` (1.1): clean up after attachments not in
    /// `cni.dev/valid-attachments`.
    Gc {
        /// The configuration.
        config: Config,
    },
}

impl Request {
    /// The `cniVersion` replies to this request carry.
    pub fn cni_version(&self) -> &str {
        match self {
            Request::Version => LATEST_VERSION,
            Request::Add { config, .. }
            | Request::Check { config, .. }
            | Request::Del { config, .. }
            | Request::Status { config }
            | Request::Gc { config } => &config.cni_version,
        }
    }
}

/// What a successful invocation prints.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// VERSION's reply.
    Version,
    /// ADD's result (the previous result, passed on).
    Result(Value),
    /// Nothing (DEL, CHECK, STATUS, GC).
    Nothing,
}

/// What the binary prints on stdout, and its exit code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// stdout.
    pub stdout: Vec<u8>,
    /// The exit code: 0 on success, 1 with an error object.
    pub exit: i32,
}

impl Outcome {
    /// A successful reply.
    pub fn reply(reply: &Reply) -> Outcome {
        let stdout = match reply {
            Reply::Version => {
                let body = serde_json::json!({
                    "cniVersion": LATEST_VERSION,
                    "supportedVersions": SUPPORTED_VERSIONS,
                });
                format!("{body}\n").into_bytes()
            }
            Reply::Result(result) => format!("{result}\n").into_bytes(),
            Reply::Nothing => Vec::new(),
        };
        Outcome { stdout, exit: 0 }
    }

    /// The spec's error object (`cniVersion`, `code`, `msg`, `details`).
    pub fn error(error: &Error, cni_version: &str) -> Outcome {
        let body = serde_json::json!({
            "cniVersion": cni_version,
            "code": error.code(),
            "msg": error.to_string(),
            "details": error_details(error),
        });
        Outcome {
            stdout: format!("{body}\n").into_bytes(),
            exit: 1,
        }
    }
}

/// The causes below an error's message, for the error object's `details`.
fn error_details(error: &Error) -> String {
    let mut details = Vec::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        details.push(cause.to_string());
        source = cause.source();
    }
    details.join(": ")
}

/// One whole invocation without I/O on the plugin's side: parses, then
/// hands the request to `execute` and renders what it returns. `execute`
/// is [`crate::run`] in the binary and a stub in unit tests.
pub fn invoke(
    env: &BTreeMap<String, String>,
    stdin: &[u8],
    execute: impl FnOnce(&Request) -> Result<Reply>,
) -> Outcome {
    match parse(env, stdin) {
        Ok(request) => match execute(&request) {
            Ok(reply) => Outcome::reply(&reply),
            Err(e) => Outcome::error(&e, request.cni_version()),
        },
        Err(e) => Outcome::error(&e, &reply_version(stdin)),
    }
}

/// The version an error about unparseable input is reported in: the
/// configuration's, when it is one this plugin speaks.
fn reply_version(stdin: &[u8]) -> String {
    serde_json::from_slice::<VersionOnly>(stdin)
        .ok()
        .and_then(|v| v.cni_version)
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| LATEST_VERSION.to_owned())
}

#[derive(Deserialize)]
struct VersionOnly {
    #[serde(rename = "cniVersion")]
    cni_version: Option<String>,
}

/// The configuration as it arrives: every field optional, so that what is
/// missing is reported by name (code 7) rather than as a decoding error.
/// Unknown fields (`ipam`, `dns`, `args`, `runtimeConfig`, other plugins'
/// conventions) are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConfig {
    cni_version: Option<String>,
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    state_file: Option<PathBuf>,
    prev_result: Option<Value>,
}

/// Which command, from `CNI_COMMAND`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

/// Parses one invocation: `CNI_COMMAND` and the other variables, then the
/// configuration on stdin. The order of checks follows the reference
/// implementation (libcni's `skel`): the command, the variables that
/// command needs, then the configuration and its version.
pub fn parse(env: &BTreeMap<String, String>, stdin: &[u8]) -> Result<Request> {
    let command = match var(env, "CNI_COMMAND") {
        Some("ADD") => Command::Add,
        Some("DEL") => Command::Del,
        Some("CHECK") => Command::Check,
        Some("VERSION") => Command::Version,
        Some("STATUS") => Command::Status,
        Some("GC") => Command::Gc,
        Some(other) => {
            return Err(Error::InvalidEnvironment {
                var: "CNI_COMMAND",
                reason: format!("unknown command {other:?}"),
            });
        }
        None => return Err(missing("CNI_COMMAND")),
    };
    if command == Command::Version {
        // VERSION's stdin names the caller's version; the reply is the
        // same whatever it is.
        return Ok(Request::Version);
    }
    let attachment_vars = matches!(command, Command::Add | Command::Del | Command::Check);
    let (container_id, ifname) = if attachment_vars {
        let id = var(env, "CNI_CONTAINERID").ok_or_else(|| missing("CNI_CONTAINERID"))?;
        let ifname = var(env, "CNI_IFNAME").ok_or_else(|| missing("CNI_IFNAME"))?;
        validate_container_id(id)?;
        validate_ifname(ifname)?;
        var(env, "CNI_PATH").ok_or_else(|| missing("CNI_PATH"))?;
        (id.to_owned(), ifname.to_owned())
    } else {
        (String::new(), String::new())
    };
    let netns = match var(env, "CNI_NETNS") {
        Some(path) if attachment_vars => Some(netns_path(path)?),
        _ => None,
    };
    let pod = pod_ref(var(env, "CNI_ARGS").unwrap_or(""))?;

    let raw: RawConfig = serde_json::from_slice(stdin).map_err(|e| Error::Decoding {
        what: "network configuration on stdin".into(),
        reason: e.to_string(),
    })?;
    let (config, prev_result) = validate_config(raw)?;

    let needs_netns = || netns.clone().ok_or_else(|| missing("CNI_NETNS"));
    let needs_prev_result = |prev: Option<Value>| {
        prev.ok_or_else(|| Error::InvalidConfig {
            reason: "prevResult is missing: herald-cni is a chained plugin and must follow \
                     the plugin that creates the pod's interface"
                .into(),
        })
    };
    Ok(match command {
        Command::Add | Command::Check => {
            let attachment = Attachment {
                container_id,
                netns: needs_netns()?,
                ifname,
                pod,
            };
            let prev_result = needs_prev_result(prev_result)?;
            if command == Command::Add {
                Request::Add {
                    attachment,
                    config,
                    prev_result,
                }
            } else {
                Request::Check {
                    attachment,
                    config,
                    prev_result,
                }
            }
        }
        Command::Del => Request::Del {
            container_id,
            netns,
            ifname,
            config,
        },
        Command::Status => Request::Status { config },
        Command::Gc => Request::Gc { config },
        Command::Version => Request::Version,
    })
}

/// A variable's value; an empty one counts as unset (runtimes pass
/// `CNI_NETNS=` for DEL without a sandbox).
fn var<'a>(env: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    env.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

fn missing(var: &'static str) -> Error {
    Error::InvalidEnvironment {
        var,
        reason: "not set".into(),
    }
}

/// Container ids as libcni accepts them: a letter or digit, then letters,
/// digits, `_`, `.` and `-`.
fn validate_container_id(id: &str) -> Result<()> {
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        Ok(())
    } else {
        Err(Error::InvalidEnvironment {
            var: "CNI_CONTAINERID",
            reason: format!("{id:?} is not a valid container id"),
        })
    }
}

/// Linux interface names: 1–15 bytes, not `.` or `..`, no `/`, `:` or
/// whitespace (the name becomes a `/proc/sys` path component here).
fn validate_ifname(name: &str) -> Result<()> {
    let bad = name.len() > 15
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    if bad {
        Err(Error::InvalidEnvironment {
            var: "CNI_IFNAME",
            reason: format!("{name:?} is not a valid interface name"),
        })
    } else {
        Ok(())
    }
}

fn netns_path(path: &str) -> Result<PathBuf> {
    let path = Path::new(path);
    if path.is_absolute() {
        Ok(path.to_owned())
    } else {
        Err(Error::InvalidEnvironment {
            var: "CNI_NETNS",
            reason: format!("{} is not an absolute path", path.display()),
        })
    }
}

/// The pod from `CNI_ARGS` (`K=V` pairs separated by `;`); other keys are
/// ignored. `None` unless both Kubernetes keys are there.
fn pod_ref(args: &str) -> Result<Option<PodRef>> {
    let mut namespace = None;
    let mut name = None;
    for pair in args.split(';').filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(Error::InvalidEnvironment {
                var: "CNI_ARGS",
                reason: format!("{pair:?} is not KEY=VALUE"),
            });
        };
        match key {
            "K8S_POD_NAMESPACE" => namespace = Some(value.to_owned()),
            "K8S_POD_NAME" => name = Some(value.to_owned()),
            _ => {}
        }
    }
    Ok(namespace
        .zip(name)
        .filter(|(ns, n)| !ns.is_empty() && !n.is_empty())
        .map(|(namespace, name)| PodRef { namespace, name }))
}

fn validate_config(raw: RawConfig) -> Result<(Config, Option<Value>)> {
    let invalid = |reason: &str| Error::InvalidConfig {
        reason: reason.to_owned(),
    };
    let cni_version = raw
        .cni_version
        .ok_or_else(|| invalid("cniVersion is missing"))?;
    if !SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
        return Err(Error::IncompatibleVersion {
            version: cni_version,
        });
    }
    let name = raw
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid("name is missing"))?;
    raw.kind
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid("type is missing"))?;
    let state_file = raw
        .state_file
        .ok_or_else(|| invalid("stateFile is missing"))?;
    if !state_file.is_absolute() {
        return Err(invalid("stateFile must be an absolute path"));
    }
    // JSON null counts as absent; anything else must be a result object.
    let prev_result = match raw.prev_result {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(v),
        Some(_) => return Err(invalid("prevResult is not a JSON object")),
    };
    Ok((
        Config {
            cni_version,
            name,
            state_file,
        },
        prev_result,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn add_env() -> BTreeMap<String, String> {
        env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c0ffee-1"),
            ("CNI_NETNS", "/run/netns/pod"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin"),
            (
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;K8S_POD_UID=u",
            ),
        ])
    }

    /// A result as Debian's bridge plugin (1.1.1) prints it, with an
    /// unknown field added: no `mac` on the bridge, no `gateway`, no `dns`
    /// contents.
    const PREV: &str = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"hbr0","mac":"aa:bb:cc:dd:ee:01"},{"name":"veth1"},{"name":"eth0","mac":"aa:bb:cc:dd:ee:02","sandbox":"/run/netns/pod"}],"ips":[{"interface":2,"address":"192.0.2.10/24"}],"dns":{},"x-vendor":{"kept":true}}"#;

    fn conf(version: &str, extra: &str) -> Vec<u8> {
        format!(
            r#"{{"cniVersion":"{version}","name":"podnet","type":"herald-cni","stateFile":"/run/herald/cni-state.json","ipam":{{}},"runtimeConfig":{{"portMappings":[]}}{extra}}}"#
        )
        .into_bytes()
    }

    fn with_prev(version: &str) -> Vec<u8> {
        conf(version, &format!(r#","prevResult":{PREV}"#))
    }

    fn code_of(outcome: &Outcome) -> u64 {
        assert_eq!(outcome.exit, 1, "expected an error: {outcome:?}");
        let v: Value = serde_json::from_slice(&outcome.stdout).unwrap();
        assert!(v["msg"].is_string(), "{v}");
        v["code"].as_u64().unwrap()
    }

    fn never(_: &Request) -> Result<Reply> {
        panic!("must not execute")
    }

    #[test]
    fn add_parses_the_attachment_the_pod_and_keeps_prev_result_whole() {
        let request = parse(&add_env(), &with_prev("1.0.0")).unwrap();
        let Request::Add {
            attachment,
            config,
            prev_result,
        } = request
        else {
            panic!("not an ADD")
        };
        assert_eq!(attachment.netns, Path::new("/run/netns/pod"));
        assert_eq!(attachment.ifname, "eth0");
        assert_eq!(
            attachment.pod,
            Some(PodRef {
                namespace: "shop".into(),
                name: "web-0".into()
            })
        );
        assert_eq!(config.state_file, Path::new("/run/herald/cni-state.json"));
        assert_eq!(prev_result, serde_json::from_str::<Value>(PREV).unwrap());
    }

    #[test]
    fn add_prints_prev_result_unchanged_with_unknown_fields() {
        let out = invoke(&add_env(), &with_prev("1.1.0"), |r| match r {
            Request::Add { prev_result, .. } => Ok(Reply::Result(prev_result.clone())),
            _ => panic!("not an ADD"),
        });
        assert_eq!(out.exit, 0);
        let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(printed, serde_json::from_str::<Value>(PREV).unwrap());
        assert_eq!(printed["x-vendor"]["kept"], true);
    }

    #[test]
    fn version_lists_1_0_and_1_1_whatever_the_caller_speaks() {
        for stdin in [&br#"{"cniVersion":"0.4.0"}"#[..], b"", b"{}"] {
            let out = invoke(&env(&[("CNI_COMMAND", "VERSION")]), stdin, |r| {
                crate::run(r)
            });
            assert_eq!(out.exit, 0);
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v["cniVersion"], "1.1.0");
            assert_eq!(
                v["supportedVersions"],
                serde_json::json!(["1.0.0", "1.1.0"])
            );
        }
    }

    #[test]
    fn missing_prev_result_on_add_and_check_is_an_invalid_config() {
        for command in ["ADD", "CHECK"] {
            let mut e = add_env();
            e.insert("CNI_COMMAND".into(), command.into());
            let out = invoke(&e, &conf("1.0.0", ""), never);
            assert_eq!(code_of(&out), u64::from(code::INVALID_CONFIG), "{command}");
            let out = invoke(&e, &conf("1.0.0", r#","prevResult":null"#), never);
            assert_eq!(code_of(&out), u64::from(code::INVALID_CONFIG), "{command}");
        }
    }

    #[test]
    fn del_needs_neither_prev_result_nor_netns() {
        let mut e = add_env();
        e.insert("CNI_COMMAND".into(), "DEL".into());
        e.insert("CNI_NETNS".into(), String::new());
        let request = parse(&e, &conf("1.0.0", "")).unwrap();
        assert!(
            matches!(request, Request::Del { netns: None, .. }),
            "{request:?}"
        );
    }

    #[test]
    fn unknown_cni_version_is_code_1_reported_in_the_latest_version() {
        let out = invoke(&add_env(), &with_prev("0.4.0"), never);
        assert_eq!(code_of(&out), u64::from(code::INCOMPATIBLE_VERSION));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["cniVersion"], "1.1.0");
        let out = invoke(&add_env(), &with_prev("2.0.0"), never);
        assert_eq!(code_of(&out), u64::from(code::INCOMPATIBLE_VERSION));
    }

    #[test]
    fn bad_json_is_a_decoding_failure_and_bad_fields_an_invalid_config() {
        assert_eq!(
            code_of(&invoke(&add_env(), b"{not json", never)),
            u64::from(code::DECODING_FAILURE)
        );
        // stateFile of the wrong type: the JSON does not decode.
        assert_eq!(
            code_of(&invoke(
                &add_env(),
                br#"{"cniVersion":"1.0.0","stateFile":7}"#,
                never
            )),
            u64::from(code::DECODING_FAILURE)
        );
        for stdin in [
            conf("1.0.0", ""),
            br#"{"cniVersion":"1.0.0","type":"herald-cni","stateFile":"/s","prevResult":{}}"#.to_vec(),
            br#"{"cniVersion":"1.0.0","name":"n","type":"herald-cni","prevResult":{}}"#.to_vec(),
            br#"{"cniVersion":"1.0.0","name":"n","type":"herald-cni","stateFile":"rel","prevResult":{}}"#.to_vec(),
            br#"{"cniVersion":"1.0.0","name":"n","type":"herald-cni","stateFile":"/s","prevResult":[1]}"#.to_vec(),
            br#"{"name":"n","type":"herald-cni","stateFile":"/s","prevResult":{}}"#.to_vec(),
        ] {
            assert_eq!(
                code_of(&invoke(&add_env(), &stdin, never)),
                u64::from(code::INVALID_CONFIG),
                "{}",
                String::from_utf8_lossy(&stdin)
            );
        }
    }

    #[test]
    fn bad_or_missing_variables_are_code_4() {
        let cases: &[(&str, Option<&str>)] = &[
            ("CNI_COMMAND", None),
            ("CNI_COMMAND", Some("FROB")),
            ("CNI_CONTAINERID", None),
            ("CNI_CONTAINERID", Some("-leading-dash")),
            ("CNI_CONTAINERID", Some("a/b")),
            ("CNI_IFNAME", None),
            ("CNI_IFNAME", Some("eth0/../../x")),
            ("CNI_IFNAME", Some("sixteen-chars-xx")),
            ("CNI_IFNAME", Some("..")),
            ("CNI_NETNS", None),
            ("CNI_NETNS", Some("run/netns/pod")),
            ("CNI_PATH", None),
            ("CNI_ARGS", Some("K8S_POD_NAME")),
        ];
        for (var, value) in cases {
            let mut e = add_env();
            match value {
                Some(v) => e.insert((*var).into(), (*v).into()),
                None => e.remove(*var),
            };
            let out = invoke(&e, &with_prev("1.0.0"), never);
            assert_eq!(
                code_of(&out),
                u64::from(code::INVALID_ENVIRONMENT),
                "{var}={value:?}"
            );
        }
    }

    #[test]
    fn a_pod_needs_both_kubernetes_keys() {
        assert_eq!(pod_ref("K8S_POD_NAME=web-0").unwrap(), None);
        assert_eq!(pod_ref("").unwrap(), None);
        assert_eq!(
            pod_ref("K8S_POD_NAMESPACE=;K8S_POD_NAME=web").unwrap(),
            None
        );
        assert_eq!(
            pod_ref("K8S_POD_NAME=web;K8S_POD_NAMESPACE=shop;").unwrap(),
            Some(PodRef {
                namespace: "shop".into(),
                name: "web".into()
            })
        );
    }

    #[test]
    fn status_and_gc_need_only_the_command_and_a_1_1_config() {
        let gc = conf(
            "1.1.0",
            r#","cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]"#,
        );
        for command in ["STATUS", "GC"] {
            let request = parse(&env(&[("CNI_COMMAND", command)]), &gc).unwrap();
            assert!(
                matches!(request, Request::Status { .. } | Request::Gc { .. }),
                "{request:?}"
            );
        }
    }

    #[test]
    fn an_execution_error_is_reported_in_the_configs_version() {
        let out = invoke(&add_env(), &with_prev("1.0.0"), |_| {
            Err(Error::CheckFailed {
                reason: "203.0.113.7 is not on lo".into(),
            })
        });
        assert_eq!(code_of(&out), u64::from(code::CHECK_FAILED));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
        assert!(v["msg"].as_str().unwrap().contains("203.0.113.7"), "{v}");
    }
}
