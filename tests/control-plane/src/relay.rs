//! A TCP relay in front of the API server, for faults on one client's
//! connections only: a client configured with the relay's URL
//! ([`crate::ControlPlane::kubeconfig_via`]) can have every connection ended
//! at once ([`Relay::end_connections`], as a load balancer that closes
//! long-lived connections does: its watches end mid-stream), or be cut off
//! ([`Relay::cut`]: connections ended, new ones closed as soon as they are
//! accepted) until [`Relay::restore`], while kubectl keeps talking to the
//! API server directly. TLS passes through untouched.
//!
//! Threads, not async: one accepting, two per connection copying bytes.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use herald_netns::{Error, Result};

/// A running relay; stopped (and its connections ended) when dropped.
#[derive(Debug)]
pub struct Relay {
    address: SocketAddr,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    /// Whether new connections are closed at once.
    cut: AtomicBool,
    /// Whether the relay is being dropped.
    stopping: AtomicBool,
    /// Both sockets of every connection relayed since the last end.
    open: Mutex<Vec<TcpStream>>,
    /// How many connections the relay ended (or closed when cut).
    ended: AtomicUsize,
}

impl Relay {
    /// Listens on a free port of 127.0.0.1 and relays every connection to
    /// `target`.
    pub fn start(target: SocketAddr) -> Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| Error(e.to_string()))?;
        let address = listener.local_addr().map_err(|e| Error(e.to_string()))?;
        let shared = Arc::new(Shared::default());
        let accepting = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("relay".to_owned())
            .spawn(move || accept(&listener, target, &accepting))
            .map_err(|e| Error(e.to_string()))?;
        Ok(Relay { address, shared })
    }

    /// Where the relay listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The relay as an API server URL (`https://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("https://{}", self.address)
    }

    /// Ends every open connection (both ways, so the client reads the end
    /// of its stream); returns how many were open.
    pub fn end_connections(&self) -> usize {
        let open = std::mem::take(&mut *self.shared.open.lock().unwrap_or_else(|e| e.into_inner()));
        for socket in &open {
            let _ = socket.shutdown(Shutdown::Both);
        }
        // Two sockets a connection.
        let n = open.len() / 2;
        self.shared.ended.fetch_add(n, Ordering::Relaxed);
        n
    }

    /// Ends every connection and closes new ones as soon as they are
    /// accepted, until [`Relay::restore`].
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        self.end_connections();
    }

    /// Relays new connections again after [`Relay::cut`].
    pub fn restore(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
    }

    /// How many connections the relay has ended or refused so far.
    pub fn ended(&self) -> usize {
        self.shared.ended.load(Ordering::Relaxed)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then sees `stopping`.
        let _ = TcpStream::connect(self.address);
        self.end_connections();
    }
}

fn accept(listener: &TcpListener, target: SocketAddr, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        if shared.cut.load(Ordering::SeqCst) {
            let _ = client.shutdown(Shutdown::Both);
            shared.ended.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        // An API server that is down: the client sees its connection end.
        let Ok(server) = TcpStream::connect(target) else {
            continue;
        };
        // One copy of each socket per direction, and one to end it by.
        let (Ok(client_in), Ok(server_in), Ok(client_end), Ok(server_end)) = (
            client.try_clone(),
            server.try_clone(),
            client.try_clone(),
            server.try_clone(),
        ) else {
            continue;
        };
        shared
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend([client_end, server_end]);
        std::thread::spawn(move || pipe(client_in, server));
        std::thread::spawn(move || pipe(server_in, client));
    }
}

/// Copies `from` to `to` until either ends, then passes the end on.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}
