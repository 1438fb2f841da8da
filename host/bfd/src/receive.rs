//! The receive sockets every session of one network namespace shares: one
//! per BFD port (3784 single hop, 4784 multihop) and address family,
//! bound to the wildcard address, made when the first session needs it.
//! Each datagram goes to a session by Your Discriminator (RFC 5880 §6.8.6:
//! "the session is found by Your Discriminator"); when that is 0 (the peer
//! has not heard from us yet) or names no session, by the source address
//! and port ("… by the source address and other information"). The
//! session then makes every check (TTL, source, the codec's), so a bad
//! packet is counted against the session it was meant for. A datagram that
//! finds no session at all is counted here ([`Receivers::unmatched`]).
//!
//! ```text
//!   UDP :3784 / :4784 (v4, v6) ──▶ receiver task ──▶ table ──▶ mpsc ──▶ session task
//! ```

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::ttl;

/// How many datagrams may wait for one session: a few detection times of
/// a fast peer. Beyond it they are dropped, as a full socket buffer would.
const QUEUE: usize = 64;

/// A received datagram on its way to its session.
#[derive(Debug)]
pub(crate) struct Datagram {
    pub bytes: Vec<u8>,
    pub from: SocketAddr,
    /// The TTL / Hop Limit it arrived with, when the kernel said.
    pub hops: Option<u8>,
}

/// Who gets what: discriminators to sessions, and (port, peer address) to
/// the discriminator of the session with that peer.
#[derive(Debug, Default)]
struct Table {
    by_discriminator: HashMap<u32, mpsc::Sender<Datagram>>,
    by_peer: HashMap<(u16, IpAddr), u32>,
}

impl Table {
    fn route(&self, port: u16, datagram: &Datagram) -> Option<&mpsc::Sender<Datagram>> {
        let by_discriminator = your_discriminator(&datagram.bytes)
            .filter(|d| *d != 0)
            .and_then(|d| self.by_discriminator.get(&d));
        by_discriminator.or_else(|| {
            self.by_peer
                .get(&(port, datagram.from.ip()))
                .and_then(|d| self.by_discriminator.get(d))
        })
    }
}

/// Your Discriminator (octets 8–11, RFC 5880 §4.1), if the datagram is long
/// enough to hold it; the session validates the rest.
fn your_discriminator(bytes: &[u8]) -> Option<u32> {
    let field: [u8; 4] = bytes.get(8..12)?.try_into().ok()?;
    Some(u32::from_be_bytes(field))
}

/// The shared receive sockets and the table; cheap to clone. Dropping the
/// last clone closes the sockets.
#[derive(Clone, Debug, Default)]
pub struct Receivers {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    table: Arc<Mutex<Table>>,
    /// The receiver tasks by (port, IPv6).
    tasks: Mutex<HashMap<(u16, bool), tokio::task::AbortHandle>>,
    unmatched: Arc<AtomicU64>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in self
            .tasks
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            task.abort();
        }
    }
}

/// A session's place in the table, given up when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    pub discriminator: u32,
    pub datagrams: mpsc::Receiver<Datagram>,
    table: Arc<Mutex<Table>>,
    key: (u16, IpAddr),
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        table.by_discriminator.remove(&self.discriminator);
        if table.by_peer.get(&self.key) == Some(&self.discriminator) {
            table.by_peer.remove(&self.key);
        }
    }
}

impl Receivers {
    /// No sockets yet: each is made by the first session that needs it.
    pub fn new() -> Receivers {
        Receivers::default()
    }

    /// How many datagrams found no session (neither their Your
    /// Discriminator nor their source address is one of a session).
    pub fn unmatched(&self) -> u64 {
        self.inner.unmatched.load(Ordering::Relaxed)
    }

    /// Gives a session with `peer` on `port` a discriminator (random, not
    /// 0, unique here) and its datagrams; binds the port's socket of the
    /// peer's family first if there is none. One session per peer address
    /// and port. Needs a runtime.
    pub(crate) fn register(
        &self,
        port: u16,
        peer: IpAddr,
        random: impl Fn() -> u64,
    ) -> io::Result<Registration> {
        self.listen(port, peer.is_ipv6())?;
        let mut table = self
            .inner
            .table
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let key = (port, peer);
        if table.by_peer.contains_key(&key) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("a BFD session with {peer} on port {port} is already running"),
            ));
        }
        let discriminator = loop {
            let d = random() as u32;
            if d != 0 && !table.by_discriminator.contains_key(&d) {
                break d;
            }
        };
        let (tx, datagrams) = mpsc::channel(QUEUE);
        table.by_discriminator.insert(discriminator, tx);
        table.by_peer.insert(key, discriminator);
        Ok(Registration {
            discriminator,
            datagrams,
            table: self.inner.table.clone(),
            key,
        })
    }

    /// Binds the wildcard address of the family on `port` (once) and starts
    /// its receiver task.
    fn listen(&self, port: u16, v6: bool) -> io::Result<()> {
        let mut tasks = self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if tasks.get(&(port, v6)).is_some_and(|t| !t.is_finished()) {
            return Ok(());
        }
        let any = if v6 {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        };
        let addr = SocketAddr::new(any, port);
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if v6 {
            socket.set_only_v6(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        ttl::enable(&socket, v6)?;
        let socket = UdpSocket::from_std(socket.into())?;
        let task = tokio::spawn(receive(
            socket,
            port,
            self.inner.table.clone(),
            self.inner.unmatched.clone(),
        ));
        tasks.insert((port, v6), task.abort_handle());
        Ok(())
    }
}

/// Reads datagrams off one socket and hands each to its session.
async fn receive(
    socket: UdpSocket,
    port: u16,
    table: Arc<Mutex<Table>>,
    unmatched: Arc<AtomicU64>,
) {
    let mut buf = [0u8; 512];
    loop {
        if let Err(e) = socket.readable().await {
            tracing::warn!(error = %e, port, "BFD receive socket failed");
            return;
        }
        let (len, from, hops) =
            match socket.try_io(Interest::READABLE, || ttl::recv(&socket, &mut buf)) {
                Ok(received) => received,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    tracing::debug!(error = %e, port, "BFD receive failed");
                    continue;
                }
            };
        let datagram = Datagram {
            bytes: buf[..len].to_vec(),
            from,
            hops,
        };
        let table = table.lock().unwrap_or_else(PoisonError::into_inner);
        match table.route(port, &datagram) {
            // A full queue drops, as a full socket buffer would.
            Some(tx) => {
                let _ = tx.try_send(datagram);
            }
            None => {
                tracing::debug!(%from, port, "dropped: no BFD session for this packet");
                unmatched.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram(your_discriminator: u32, from: &str) -> Datagram {
        let mut bytes = vec![0x20, 0xc0, 3, 24];
        bytes.extend_from_slice(&7u32.to_be_bytes());
        bytes.extend_from_slice(&your_discriminator.to_be_bytes());
        bytes.resize(24, 0);
        Datagram {
            bytes,
            from: from.parse().unwrap(),
            hops: Some(255),
        }
    }

    #[test]
    fn datagrams_go_by_discriminator_then_by_source_address_on_their_port() {
        let mut table = Table::default();
        let (a, mut a_rx) = mpsc::channel(4);
        let (b, mut b_rx) = mpsc::channel(4);
        table.by_discriminator.insert(10, a);
        table.by_discriminator.insert(20, b);
        table
            .by_peer
            .insert((3784, "192.0.2.1".parse().unwrap()), 10);
        table
            .by_peer
            .insert((4784, "192.0.2.1".parse().unwrap()), 20);
        let send = |d: Datagram, port: u16| match table.route(port, &d) {
            Some(tx) => {
                tx.try_send(d).unwrap();
                true
            }
            None => false,
        };
        // By discriminator, whatever the source.
        assert!(send(datagram(20, "198.51.100.9:50000"), 3784));
        // Your Discriminator 0, or one of no session: by source and port.
        assert!(send(datagram(0, "192.0.2.1:50000"), 3784));
        assert!(send(datagram(99, "192.0.2.1:50000"), 4784));
        // Neither.
        assert!(!send(datagram(0, "198.51.100.9:50000"), 3784));
        assert!(!send(datagram(99, "192.0.2.2:50000"), 3784));
        // Too short to hold Your Discriminator: by source.
        let mut short = datagram(0, "192.0.2.1:50000");
        short.bytes.truncate(6);
        assert!(send(short, 3784));
        let got = |rx: &mut mpsc::Receiver<Datagram>| {
            std::iter::from_fn(|| rx.try_recv().ok())
                .map(|d| (your_discriminator(&d.bytes), d.bytes.len()))
                .collect::<Vec<_>>()
        };
        assert_eq!(got(&mut a_rx), [(Some(0), 24), (None, 6)]);
        assert_eq!(got(&mut b_rx), [(Some(20), 24), (Some(99), 24)]);
    }

    #[test]
    fn a_registration_is_unique_per_peer_and_port_and_given_up_when_dropped() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        // Port 0: the kernel's choice, so the test needs no privilege.
        let receivers = Receivers::new();
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        let counter = std::sync::atomic::AtomicU64::new(0);
        // The first "random" numbers collide with 0 and with each other.
        let random = || [0, 5, 5, 6][counter.fetch_add(1, Ordering::Relaxed) as usize % 4];
        let first = receivers.register(0, peer, random).unwrap();
        assert_eq!(first.discriminator, 5);
        let e = receivers.register(0, peer, random).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
        let other = receivers
            .register(0, "192.0.2.9".parse().unwrap(), random)
            .unwrap();
        assert_eq!(other.discriminator, 6, "5 is taken");
        drop(first);
        let again = receivers.register(0, peer, random).unwrap();
        assert_eq!(again.discriminator, 5, "given up by the dropped one");
    }
}
