//! A raw TCP peer on loopback that opens its own connection while Herald's
//! is up: connection collisions (RFC 4271 §6.8) forced step by step, the
//! Cease / Connection Collision Resolution (RFC 4486, subcode 7) read off
//! the losing connection, passive sessions, and the listener turning away
//! an address that is not a peer.
//!
//! Herald is 127.0.0.1 (listening there only), the peer 127.0.0.2.

mod raw_peer;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use herald_bgp::fsm::Fsm;
use herald_bgp::{Config, Listeners, PeerConfig, Session, State};
use herald_core::bgp::Asn;
use raw_peer::{WAIT, read_message, routes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::timeout;

const HERALD: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// Herald's BGP Identifier.
const HERALD_ID: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const PEER_ASN: u32 = 65001;

const OPEN: u8 = 1;
const UPDATE: u8 = 2;
const NOTIFICATION: u8 = 3;
const KEEPALIVE: u8 = 4;

/// Herald's session to the raw peer, and the peer's ends.
struct Lab {
    /// Where Herald's own connections arrive.
    peer_listener: TcpListener,
    session: Session,
    _listeners: Listeners,
    /// The port both sides use.
    port: u16,
    peer_id: Ipv4Addr,
}

impl Lab {
    async fn new(peer_id: Ipv4Addr, passive: bool) -> Lab {
        let peer_listener = TcpListener::bind((PEER, 0)).await.unwrap();
        let port = peer_listener.local_addr().unwrap().port();
        let config = PeerConfig {
            name: "raw".into(),
            remote: SocketAddr::new(PEER.into(), port),
            source: Some(HERALD.into()),
            ttl: None,
            password: None,
            fsm: Config {
                local_asn: Asn::new(4_200_000_001).unwrap(),
                peer_asn: Asn::new(PEER_ASN).unwrap(),
                router_id: HERALD_ID,
                hold_time: 90,
                keepalive_time: 30,
                connect_retry: Duration::from_secs(1),
                graceful_restart: None,
                ipv4: true,
                ipv6: false,
                passive,
            },
            next_hop_v4: Some(HERALD),
            next_hop_v6: None,
        };
        let listeners = Listeners::spawn(vec![HERALD.into()]);
        let mut listening = listeners.listening();
        let session = Session::spawn(config, routes());
        listeners.set(vec![session.inbound()]);
        let herald = SocketAddr::new(HERALD.into(), port);
        timeout(WAIT, listening.wait_for(|l| l.contains(&herald)))
            .await
            .expect("Herald to listen in time")
            .unwrap();
        Lab {
            peer_listener,
            session,
            _listeners: listeners,
            port,
            peer_id,
        }
    }

    /// Accepts Herald's own connection and reads its OPEN.
    async fn accept_herald(&self) -> TcpStream {
        let (mut stream, _) = timeout(WAIT, self.peer_listener.accept())
            .await
            .expect("Herald to connect in time")
            .unwrap();
        assert_eq!(read_message(&mut stream).await[18], OPEN);
        stream
    }

    /// Opens the peer's connection to Herald from `from`.
    async fn connect_from(&self, from: Ipv4Addr) -> TcpStream {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(from.into(), 0)).unwrap();
        timeout(
            WAIT,
            socket.connect(SocketAddr::new(HERALD.into(), self.port)),
        )
        .await
        .expect("Herald to accept in time")
        .unwrap()
    }

    /// Opens the peer's connection to Herald and reads Herald's OPEN.
    async fn connect(&self) -> TcpStream {
        let mut stream = self.connect_from(PEER).await;
        assert_eq!(read_message(&mut stream).await[18], OPEN);
        stream
    }

    /// The peer's OPEN.
    fn open(&self) -> Vec<u8> {
        let fsm = Fsm::new(Config {
            local_asn: Asn::new(PEER_ASN).unwrap(),
            peer_asn: Asn::new(4_200_000_001).unwrap(),
            router_id: self.peer_id,
            hold_time: 90,
            keepalive_time: 30,
            connect_retry: Duration::from_secs(1),
            graceful_restart: None,
            ipv4: true,
            ipv6: false,
            passive: false,
        });
        herald_bgp::wire::encode(&fsm.open_message()).unwrap()
    }

    async fn established(&self) {
        let mut status = self.session.status();
        timeout(WAIT, status.wait_for(|s| s.state == State::Established))
            .await
            .expect("the session to establish")
            .unwrap();
    }
}

fn keepalive() -> Vec<u8> {
    let mut out = vec![0xff; 16];
    out.extend_from_slice(&[0, 19, KEEPALIVE]);
    out
}

/// The NOTIFICATION Herald sends, then the end of the connection.
async fn notification_then_close(stream: &mut TcpStream) -> (u8, u8) {
    let m = read_message(stream).await;
    assert_eq!(m[18], NOTIFICATION, "expected a NOTIFICATION, got {m:?}");
    let mut rest = Vec::new();
    timeout(WAIT, stream.read_to_end(&mut rest))
        .await
        .expect("Herald to close the connection")
        .ok();
    assert!(rest.is_empty(), "nothing after the NOTIFICATION: {rest:?}");
    (m[19], m[20])
}

/// Reads until an UPDATE (the routes after Established) arrives.
async fn routes_arrive(stream: &mut TcpStream) {
    loop {
        let m = read_message(stream).await;
        assert_ne!(m[18], NOTIFICATION, "the session failed: {m:?}");
        if m[18] == UPDATE && m.len() > 23 {
            return;
        }
    }
}

#[tokio::test]
async fn collision_with_our_higher_identifier_keeps_our_connection() {
    let lab = Lab::new(Ipv4Addr::new(192, 0, 2, 1), false).await;
    let mut ours = lab.accept_herald().await;
    let mut theirs = lab.connect().await;
    assert_eq!(lab.session.status().borrow().state, State::OpenSent);
    // Herald's connection reaches OpenConfirm…
    ours.write_all(&lab.open()).await.unwrap();
    assert_eq!(read_message(&mut ours).await[18], KEEPALIVE);
    // …then the OPEN on the peer's connection collides: Herald's
    // identifier is higher, so the peer's connection goes.
    theirs.write_all(&lab.open()).await.unwrap();
    assert_eq!(notification_then_close(&mut theirs).await, (6, 7));
    ours.write_all(&keepalive()).await.unwrap();
    lab.established().await;
    routes_arrive(&mut ours).await;

    // A connection while Established is refused the same way.
    let mut late = lab.connect_from(PEER).await;
    assert_eq!(notification_then_close(&mut late).await, (6, 7));
    let status = lab.session.status().borrow().clone();
    assert_eq!((status.state, status.established), (State::Established, 1));
    lab.session.stop().await;
    // Past the End-of-RIB, Cease / Administrative Shutdown.
    loop {
        let m = read_message(&mut ours).await;
        if m[18] == NOTIFICATION {
            assert_eq!((m[19], m[20]), (6, 2));
            break;
        }
    }
}

#[tokio::test]
async fn collision_with_the_peers_higher_identifier_keeps_its_connection() {
    let lab = Lab::new(Ipv4Addr::new(192, 0, 2, 9), false).await;
    let mut ours = lab.accept_herald().await;
    let mut theirs = lab.connect().await;
    ours.write_all(&lab.open()).await.unwrap();
    assert_eq!(read_message(&mut ours).await[18], KEEPALIVE);
    theirs.write_all(&lab.open()).await.unwrap();
    // Herald closes its own connection and confirms the peer's.
    assert_eq!(notification_then_close(&mut ours).await, (6, 7));
    assert_eq!(read_message(&mut theirs).await[18], KEEPALIVE);
    theirs.write_all(&keepalive()).await.unwrap();
    lab.established().await;
    routes_arrive(&mut theirs).await;
    assert_eq!(lab.session.status().borrow().established, 1);
    lab.session.stop().await;
}

#[tokio::test]
async fn passive_session_never_connects_and_takes_the_peers_connection() {
    let lab = Lab::new(Ipv4Addr::new(192, 0, 2, 1), true).await;
    assert_eq!(lab.session.status().borrow().state, State::Active);
    let mut theirs = lab.connect().await;
    theirs.write_all(&lab.open()).await.unwrap();
    theirs.write_all(&keepalive()).await.unwrap();
    assert_eq!(read_message(&mut theirs).await[18], KEEPALIVE);
    lab.established().await;
    routes_arrive(&mut theirs).await;
    // An active session connects at once on start; by now its connection
    // would wait in the peer's accept queue.
    assert!(
        timeout(Duration::from_millis(200), lab.peer_listener.accept())
            .await
            .is_err(),
        "a passive session connected to the peer"
    );
    lab.session.stop().await;
}

#[tokio::test]
async fn connection_from_an_address_that_is_no_peer_is_rejected() {
    let lab = Lab::new(Ipv4Addr::new(192, 0, 2, 1), true).await;
    let stranger = Ipv4Addr::new(127, 0, 0, 3);
    let mut s = lab.connect_from(stranger).await;
    // Cease / Connection Rejected (RFC 4486 §4), never an OPEN.
    assert_eq!(notification_then_close(&mut s).await, (6, 5));
    // The session did not notice.
    assert_eq!(lab.session.status().borrow().state, State::Active);
    let mut theirs = lab.connect().await;
    theirs.write_all(&lab.open()).await.unwrap();
    theirs.write_all(&keepalive()).await.unwrap();
    lab.established().await;
    lab.session.stop().await;
}
