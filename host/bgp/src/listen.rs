//! Accepting the peers' connections. Passive sessions only wait for theirs;
//! active ones take theirs too, and their machine resolves the collision
//! with its own connection (RFC 4271 §6.8).
//!
//! One listening socket per local address and port that the sessions need:
//! each of the configured listen addresses of a session's family, on the
//! session's port (the peer's port, 179 by default; BGP speakers use the
//! same port on both sides). A connection goes to the session whose peer
//! address and port match, and whose source address, when it has one, is
//! the address the connection arrived on. Any other connection is refused
//! with Cease / Connection Rejected (RFC 4486 §4) and logged. The MD5 keys
//! of sessions with passwords are set on the listening socket per peer
//! address, so the kernel checks the peer's SYN before a connection exists
//! and the accepted socket inherits the key.
//!
//! ```text
//!  Listeners::set(inbounds) ──watch──► manager task ──bind/close, MD5 keys──► listening sockets
//!                                          │ (retries failed binds)                 │
//!                                          └──table──► accept task per socket ◄─────┘
//!                                                          └─► the matching Session's queue, or refused
//! ```

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use netgauze_bgp_pkt::notification::{BgpNotificationMessage, CeaseError};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::peer::PeerConfig;
use crate::socket::{refuse, set_ttl};

/// How long a failed bind waits before it is tried again (the address may
/// appear later, or another program may let go of the port).
const BIND_RETRY: Duration = Duration::from_secs(5);

/// The pause after a failed `accept` (out of file descriptors, say), so a
/// persistent error does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Connections the kernel may queue before they are accepted: a speaker
/// has one connection per peer at a time.
const BACKLOG: u32 = 64;

/// A session that takes the peer's connections: which ones, and where they
/// go. Made by [`Session::inbound`](crate::Session::inbound). Its `Debug`
/// hides the MD5 password.
#[derive(Clone)]
pub struct Inbound {
    name: String,
    peer: IpAddr,
    port: u16,
    local: Option<IpAddr>,
    ttl: Option<u8>,
    password: Option<String>,
    to: mpsc::Sender<TcpStream>,
}

impl Inbound {
    pub(crate) fn new(config: &PeerConfig, to: mpsc::Sender<TcpStream>) -> Inbound {
        Inbound {
            name: config.name.clone(),
            peer: config.remote.ip(),
            port: config.remote.port(),
            local: config.source,
            ttl: config.ttl,
            password: config.password.clone(),
            to,
        }
    }

    /// Whether a connection from `remote` that arrived on `local` is this
    /// session's.
    fn takes(&self, remote: IpAddr, local: SocketAddr) -> bool {
        self.peer == remote.to_canonical()
            && self.port == local.port()
            && self.local.is_none_or(|l| l == local.ip().to_canonical())
    }
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("name", &self.name)
            .field("peer", &self.peer)
            .field("port", &self.port)
            .field("local", &self.local)
            .field("ttl", &self.ttl)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

type Table = Arc<Vec<Inbound>>;

/// The listening sockets of a speaker.
#[derive(Debug)]
pub struct Listeners {
    table: watch::Sender<Table>,
    listening: watch::Receiver<BTreeSet<SocketAddr>>,
    task: JoinHandle<()>,
}

impl Listeners {
    /// Starts with no sessions, so nothing is listened on yet; `addresses`
    /// are the local addresses to listen on (`0.0.0.0` and `::` for every
    /// address of the host).
    pub fn spawn(addresses: Vec<IpAddr>) -> Listeners {
        let (table, table_rx) = watch::channel(Table::default());
        let (listening_tx, listening) = watch::channel(BTreeSet::new());
        let task = tokio::spawn(manage(addresses, table_rx, listening_tx));
        Listeners {
            table,
            listening,
            task,
        }
    }

    /// The sessions that take connections from now on: listening sockets
    /// open, close and change keys to match.
    pub fn set(&self, sessions: Vec<Inbound>) {
        self.table.send_replace(Arc::new(sessions));
    }

    /// The addresses listened on, to watch.
    pub fn listening(&self) -> watch::Receiver<BTreeSet<SocketAddr>> {
        self.listening.clone()
    }

    /// Closes every listening socket.
    pub async fn stop(self) {
        drop(self.table);
        let _ = self.task.await;
    }
}

/// One listening socket.
struct Listening {
    listener: Arc<TcpListener>,
    /// The MD5 keys set on it, by peer address.
    keys: BTreeMap<IpAddr, String>,
    accept: JoinHandle<()>,
}

/// Keeps the sockets in line with the table until the [`Listeners`] go.
async fn manage(
    addresses: Vec<IpAddr>,
    mut table: watch::Receiver<Table>,
    listening: watch::Sender<BTreeSet<SocketAddr>>,
) {
    let mut open: BTreeMap<SocketAddr, Listening> = BTreeMap::new();
    loop {
        let sessions = table.borrow_and_update().clone();
        let complete = reconcile(&addresses, &sessions, &mut open, &table);
        listening.send_if_modified(|now| {
            let next: BTreeSet<SocketAddr> = open.keys().copied().collect();
            let changed = *now != next;
            *now = next;
            changed
        });
        let retry = async {
            if complete {
                std::future::pending::<()>().await
            } else {
                tokio::time::sleep(BIND_RETRY).await
            }
        };
        tokio::select! {
            changed = table.changed() => if changed.is_err() { break },
            () = retry => {}
        }
    }
    for (_, l) in open {
        l.accept.abort();
    }
}

/// The local addresses and ports `sessions` need, each with its sessions.
fn wanted<'a>(
    addresses: &[IpAddr],
    sessions: &'a [Inbound],
) -> BTreeMap<SocketAddr, Vec<&'a Inbound>> {
    let mut wanted: BTreeMap<SocketAddr, Vec<&Inbound>> = BTreeMap::new();
    for s in sessions {
        for a in addresses.iter().filter(|a| a.is_ipv4() == s.peer.is_ipv4()) {
            wanted
                .entry(SocketAddr::new(*a, s.port))
                .or_default()
                .push(s);
        }
    }
    wanted
}

/// Opens and closes sockets and sets keys; false when a bind failed (to be
/// retried).
fn reconcile(
    addresses: &[IpAddr],
    sessions: &[Inbound],
    open: &mut BTreeMap<SocketAddr, Listening>,
    table: &watch::Receiver<Table>,
) -> bool {
    let wanted = wanted(addresses, sessions);
    open.retain(|addr, l| {
        let keep = wanted.contains_key(addr);
        if !keep {
            l.accept.abort();
            tracing::info!(%addr, "no longer listening for BGP connections");
        }
        keep
    });
    let mut complete = true;
    for (addr, sessions) in wanted {
        let l = match open.entry(addr) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => match bind(addr) {
                Ok(listener) => {
                    let listener = Arc::new(listener);
                    let accept = tokio::spawn(accept(listener.clone(), table.clone()));
                    tracing::info!(%addr, "listening for BGP connections");
                    e.insert(Listening {
                        listener,
                        keys: BTreeMap::new(),
                        accept,
                    })
                }
                Err(err) => {
                    tracing::warn!(%addr, error = %err, retry_in = ?BIND_RETRY, "cannot listen for BGP connections: passive peers cannot connect, active ones are only connected to");
                    complete = false;
                    continue;
                }
            },
        };
        set_keys(addr, l, &sessions);
    }
    complete
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => {
            let socket = TcpSocket::new_v6()?;
            // IPv4 peers have their own socket on the IPv4 address.
            socket2::SockRef::from(&socket).set_only_v6(true)?;
            socket
        }
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Sets the MD5 keys of `sessions` on a listening socket and removes the
/// keys of peers no longer there.
fn set_keys(addr: SocketAddr, l: &mut Listening, sessions: &[&Inbound]) {
    let mut keys: BTreeMap<IpAddr, &str> = BTreeMap::new();
    for s in sessions {
        let Some(key) = s.password.as_deref() else {
            continue;
        };
        match keys.get(&s.peer) {
            Some(first) if *first != key => {
                tracing::warn!(peer = %s.name, address = %s.peer, %addr, "another session with this peer address has a different password; the listening socket keeps the first");
            }
            Some(_) => {}
            None => {
                keys.insert(s.peer, key);
            }
        }
    }
    let stale: Vec<IpAddr> = l
        .keys
        .keys()
        .filter(|peer| !keys.contains_key(peer))
        .copied()
        .collect();
    for peer in stale {
        if let Err(e) = crate::md5::remove_key(&*l.listener, peer) {
            tracing::warn!(%peer, %addr, error = %e, "cannot remove the TCP MD5 key from the listening socket");
        }
        l.keys.remove(&peer);
    }
    for (peer, key) in keys {
        if l.keys.get(&peer).map(String::as_str) == Some(key) {
            continue;
        }
        match crate::md5::set_key(&*l.listener, peer, key.as_bytes()) {
            Ok(()) => {
                l.keys.insert(peer, key.to_owned());
            }
            Err(e) => {
                tracing::warn!(%peer, %addr, error = %e, "cannot set the TCP MD5 key on the listening socket: this peer's connections will fail");
            }
        }
    }
}

/// Accepts connections and hands each to its session.
async fn accept(listener: Arc<TcpListener>, table: watch::Receiver<Table>) {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a BGP connection failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let sessions = table.borrow().clone();
        match sessions.iter().find(|s| s.takes(remote.ip(), local)) {
            Some(s) => hand_over(s, stream),
            None => {
                tracing::warn!(%remote, %local, "refused a BGP connection: no peer is configured with this address (and port, and source address)");
                refuse(
                    stream,
                    &BgpNotificationMessage::CeaseError(CeaseError::ConnectionRejected {
                        value: Box::new([]),
                    }),
                );
            }
        }
    }
}

fn hand_over(session: &Inbound, stream: TcpStream) {
    if let Some(ttl) = session.ttl
        && let Err(e) = set_ttl(&stream, session.peer.is_ipv6(), ttl)
    {
        tracing::warn!(peer = %session.name, error = %e, "cannot set the TTL of the peer's connection");
        return;
    }
    let _ = stream.set_nodelay(true);
    if session.to.try_send(stream).is_err() {
        tracing::debug!(peer = %session.name, "the session takes no connection now: closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbound(peer: &str, port: u16, local: Option<&str>) -> Inbound {
        let (to, _) = mpsc::channel(1);
        Inbound {
            name: peer.to_owned(),
            peer: peer.parse().unwrap(),
            port,
            local: local.map(|l| l.parse().unwrap()),
            ttl: None,
            password: Some("s3cret".into()),
            to,
        }
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_connection_goes_to_the_peer_with_its_address_port_and_source() {
        let s = inbound("192.0.2.1", 179, None);
        assert!(s.takes("192.0.2.1".parse().unwrap(), addr("192.0.2.2:179")));
        assert!(!s.takes("192.0.2.9".parse().unwrap(), addr("192.0.2.2:179")));
        assert!(!s.takes("192.0.2.1".parse().unwrap(), addr("192.0.2.2:1179")));
        let s = inbound("192.0.2.1", 179, Some("192.0.2.2"));
        assert!(s.takes("192.0.2.1".parse().unwrap(), addr("192.0.2.2:179")));
        assert!(!s.takes("192.0.2.1".parse().unwrap(), addr("192.0.2.3:179")));
        // An IPv4-mapped address is the IPv4 peer.
        assert!(s.takes(
            "::ffff:192.0.2.1".parse().unwrap(),
            addr("[::ffff:192.0.2.2]:179")
        ));
    }

    #[test]
    fn each_listen_address_of_the_family_on_each_port() {
        let sessions = [
            inbound("192.0.2.1", 179, None),
            inbound("192.0.2.5", 179, None),
            inbound("2001:db8::1", 1179, None),
        ];
        let addresses = ["0.0.0.0".parse().unwrap(), "::".parse().unwrap()];
        let w = wanted(&addresses, &sessions);
        let keys: Vec<String> = w.keys().map(|a| a.to_string()).collect();
        assert_eq!(keys, ["0.0.0.0:179", "[::]:1179"]);
        assert_eq!(w[&addr("0.0.0.0:179")].len(), 2);
        // Without an address of its family, a session gets no socket.
        assert!(wanted(&addresses[1..], &sessions[..1]).is_empty());
    }

    #[test]
    fn debug_output_never_shows_the_md5_password() {
        let shown = format!("{:?}", inbound("192.0.2.1", 179, None));
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
