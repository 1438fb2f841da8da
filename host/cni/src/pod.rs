//! Carrying out [`crate::dsr`]'s actions inside the pod's network
//! namespace: the only module that touches the system.
//!
//! How the namespace is entered: a short-lived thread calls `setns(2)`
//! (through nix; network namespaces are per thread, so the rest of the
//! process stays where it was), then opens its netlink socket — a socket
//! belongs to the namespace of the thread that created it — and writes
//! sysctls under `/proc/sys/net`, which resolves against the writing
//! thread's namespace. No command is run.
//!
//! Addresses this plugin adds carry their own address protocol
//! (`IFA_PROTO`, Linux 6.3+) [`ADDRESS_PROTOCOL`]: DEL removes exactly
//! those, whatever the state file says by then, and touches nothing
//! another program put on `lo`. The ARP sysctls are left as they are on
//! DEL: they only matter while a VIP is on `lo`, and the namespace goes
//! with the pod.

use std::fs::File;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressProtocol};
use nix::sched::CloneFlags;
use nix::sys::statfs::{NSFS_MAGIC, fstatfs};
use rtnetlink::Handle;
use rtnetlink::LinkUnspec;

use crate::dsr::{Action, ArpKey};
use crate::{Error, Result};

/// The `IFA_PROTO` value on the addresses this plugin adds ('H'; the
/// kernel's own values are 0–3, and iproute2 shows this one as `0x48`).
pub const ADDRESS_PROTOCOL: u8 = 0x48;

/// The loopback interface's index: the kernel gives `lo` index 1 in every
/// network namespace (`LOOPBACK_IFINDEX`).
const LOOPBACK_INDEX: u32 = 1;

/// A pod's network namespace, opened and checked to be one.
#[derive(Debug)]
pub struct Netns {
    path: PathBuf,
    file: File,
}

impl Netns {
    /// Opens `path`: a missing file is an unknown container (code 3), a
    /// file that is not a namespace a bad `CNI_NETNS` (code 4).
    pub fn open(path: &Path) -> Result<Netns> {
        Netns::open_if_exists(path)?.ok_or_else(|| Error::UnknownContainer {
            netns: path.to_owned(),
        })
    }

    /// Opens `path` if it exists.
    pub fn open_if_exists(path: &Path) -> Result<Option<Netns>> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(Error::Io {
                    what: format!("opening network namespace {}", path.display()),
                    source,
                });
            }
        };
        let is_namespace = fstatfs(&file)
            .map(|fs| fs.filesystem_type() == NSFS_MAGIC)
            .unwrap_or(false);
        if !is_namespace {
            return Err(not_a_netns(path, "not a namespace file (nsfs)"));
        }
        Ok(Some(Netns {
            path: path.to_owned(),
            file,
        }))
    }

    /// Brings `lo` up, puts the VIPs on it (tagged with
    /// [`ADDRESS_PROTOCOL`]; an address already there is replaced, so ADD
    /// may be repeated) and writes the sysctls.
    pub fn apply(&self, actions: &[Action]) -> Result<()> {
        self.enter(|| {
            netlink(async |handle| {
                handle
                    .link()
                    .set(LinkUnspec::new_with_index(LOOPBACK_INDEX).up().build())
                    .execute()
                    .await
                    .map_err(|source| Error::Netlink {
                        what: "setting lo up".into(),
                        source,
                    })?;
                for action in actions {
                    if let Action::LoopbackAddress(vip) = action {
                        let mut request = handle
                            .address()
                            .add(LOOPBACK_INDEX, *vip, host_prefix(*vip))
                            .replace();
                        request
                            .message_mut()
                            .attributes
                            .push(AddressAttribute::Protocol(AddressProtocol::from(
                                ADDRESS_PROTOCOL,
                            )));
                        request.execute().await.map_err(|source| Error::Netlink {
                            what: format!("adding {vip} to lo"),
                            source,
                        })?;
                    }
                }
                Ok(())
            })?;
            for action in actions {
                if let Action::ArpSysctl { device, key, value } = action {
                    let path = Action::sysctl_path(device, *key);
                    std::fs::write(&path, format!("{value}\n")).map_err(|source| Error::Io {
                        what: format!("writing {path} in the pod"),
                        source,
                    })?;
                }
            }
            Ok(())
        })
    }

    /// Checks that every action is in effect: each VIP on `lo`, each
    /// sysctl at its value.
    pub fn check(&self, actions: &[Action]) -> Result<()> {
        if actions.is_empty() {
            return Ok(());
        }
        self.enter(|| {
            let on_lo: Vec<IpAddr> = netlink(async |handle| loopback_addresses(&handle).await)?
                .iter()
                .filter_map(|m| address_of(m).filter(|a| m.header.prefix_len == host_prefix(*a)))
                .collect();
            let mut wrong = Vec::new();
            for action in actions {
                match action {
                    Action::LoopbackAddress(vip) if !on_lo.contains(vip) => {
                        wrong.push(format!("{vip} is not on lo"));
                    }
                    Action::LoopbackAddress(_) => {}
                    Action::ArpSysctl { device, key, value } => {
                        let path = Action::sysctl_path(device, *key);
                        let now = std::fs::read_to_string(&path).map_err(|source| Error::Io {
                            what: format!("reading {path} in the pod"),
                            source,
                        })?;
                        if now.trim() != value.to_string() {
                            wrong.push(format!(
                                "net.ipv4.conf.{device}.{} is {} (want {value})",
                                ArpKey::name(*key),
                                now.trim()
                            ));
                        }
                    }
                }
            }
            if wrong.is_empty() {
                Ok(())
            } else {
                Err(Error::CheckFailed {
                    reason: wrong.join("; "),
                })
            }
        })
    }

    /// Removes every address this plugin put on `lo` (none is fine).
    pub fn remove(&self) -> Result<()> {
        self.enter(|| {
            netlink(async |handle| {
                for message in loopback_addresses(&handle).await? {
                    let ours = message.attributes.iter().any(|a| {
                        matches!(a, AddressAttribute::Protocol(p) if u8::from(*p) == ADDRESS_PROTOCOL)
                    });
                    if ours {
                        let what = format!("removing {:?} from lo", address_of(&message));
                        handle
                            .address()
                            .del(message)
                            .execute()
                            .await
                            .map_err(|source| Error::Netlink { what, source })?;
                    }
                }
                Ok(())
            })
        })
    }

    /// Runs `work` on a thread inside the namespace.
    fn enter<T: Send>(&self, work: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    nix::sched::setns(&self.file, CloneFlags::CLONE_NEWNET)
                        .map_err(|e| not_a_netns(&self.path, &format!("setns: {e}")))?;
                    work()
                })
                .join()
                .unwrap_or_else(|_| {
                    Err(Error::Io {
                        what: format!("working in {}", self.path.display()),
                        source: std::io::Error::other("the namespace thread panicked"),
                    })
                })
        })
    }
}

fn not_a_netns(path: &Path, reason: &str) -> Error {
    Error::InvalidEnvironment {
        var: "CNI_NETNS",
        reason: format!("{} is not a network namespace: {reason}", path.display()),
    }
}

/// /32 for IPv4, /128 for IPv6.
fn host_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

fn address_of(message: &AddressMessage) -> Option<IpAddr> {
    message.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    })
}

async fn loopback_addresses(handle: &Handle) -> Result<Vec<AddressMessage>> {
    handle
        .address()
        .get()
        .set_link_index_filter(LOOPBACK_INDEX)
        .execute()
        .try_collect()
        .await
        .map_err(|source| Error::Netlink {
            what: "listing lo's addresses".into(),
            source,
        })
}

/// Runs `work` with a netlink handle on a current-thread runtime of the
/// calling thread (so the socket is opened in that thread's namespace).
fn netlink<T>(work: impl AsyncFnOnce(Handle) -> Result<T>) -> Result<T> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| Error::Io { what, source }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(io("starting the netlink runtime"))?;
    runtime.block_on(async {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(io("opening a netlink socket"))?;
        let task = tokio::spawn(connection);
        let result = work(handle).await;
        task.abort();
        result
    })
}
