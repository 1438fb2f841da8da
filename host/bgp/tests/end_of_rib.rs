//! End-of-RIB on the wire, read by a raw peer on loopback: it follows the
//! initial routes when all of them were sent, and waits while a group that
//! does not fit one UPDATE is skipped, until that route is fixed.
//!
//! Herald is 127.0.0.1, the peer 127.0.0.2 (listening; Herald connects).

mod raw_peer;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use herald_bgp::fsm::Fsm;
use herald_bgp::rib::{Attributes, Routes};
use herald_bgp::{Config, PeerConfig, Session};
use herald_core::bgp::{Asn, Community};
use netgauze_bgp_pkt::BgpMessage;
use raw_peer::{WAIT, read_message};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::timeout;

const HERALD: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// The settings of either side: IPv4 only, graceful restart.
fn config(local: Asn, peer: Asn, router_id: Ipv4Addr) -> Config {
    Config {
        local_asn: local,
        peer_asn: peer,
        router_id,
        hold_time: 90,
        keepalive_time: 30,
        connect_retry: Duration::from_secs(1),
        graceful_restart: Some(120),
        ipv4: true,
        ipv6: false,
        passive: false,
    }
}

/// Starts Herald's session towards the raw peer and completes the
/// handshake on Herald's connection.
async fn established(routes: watch::Receiver<Arc<Routes>>) -> (Session, TcpStream) {
    let listener = TcpListener::bind((PEER, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (herald_asn, peer_asn) = (Asn::new(65010).unwrap(), Asn::new(65001).unwrap());
    let session = Session::spawn(
        PeerConfig {
            name: "raw".into(),
            remote: SocketAddr::new(PEER.into(), port),
            source: Some(HERALD.into()),
            ttl: None,
            password: None,
            fsm: config(herald_asn, peer_asn, Ipv4Addr::new(192, 0, 2, 2)),
            next_hop_v4: Some(HERALD),
            next_hop_v6: None,
        },
        routes,
    );
    let (mut stream, _) = timeout(WAIT, listener.accept())
        .await
        .expect("Herald to connect in time")
        .unwrap();
    assert!(matches!(
        decode(&read_message(&mut stream).await),
        BgpMessage::Open(_)
    ));
    let open = Fsm::new(config(peer_asn, herald_asn, Ipv4Addr::new(192, 0, 2, 1))).open_message();
    stream
        .write_all(&herald_bgp::wire::encode(&open).unwrap())
        .await
        .unwrap();
    stream
        .write_all(&herald_bgp::wire::encode(&BgpMessage::KeepAlive).unwrap())
        .await
        .unwrap();
    assert!(matches!(
        decode(&read_message(&mut stream).await),
        BgpMessage::KeepAlive
    ));
    (session, stream)
}

fn decode(bytes: &[u8]) -> BgpMessage {
    herald_bgp::wire::decode(bytes, true).unwrap()
}

/// The next UPDATE: its announced prefixes, or `None` for End-of-RIB (an
/// UPDATE with nothing in it, RFC 4724 §2).
async fn next_update(stream: &mut TcpStream) -> Option<Vec<String>> {
    let BgpMessage::Update(u) = decode(&read_message(stream).await) else {
        panic!("expected an UPDATE");
    };
    if u.withdraw_routes().is_empty() && u.path_attributes().is_empty() && u.nlri().is_empty() {
        return None;
    }
    Some(
        u.nlri()
            .iter()
            .map(|n| n.network().address().to_string())
            .collect(),
    )
}

fn routes(list: &[(&str, usize)]) -> Arc<Routes> {
    Arc::new(
        list.iter()
            .map(|(prefix, communities)| {
                let attrs = Attributes {
                    communities: (0..*communities)
                        .map(|i| Community::new(64512, u16::try_from(i).unwrap()))
                        .collect(),
                    ..Attributes::default()
                };
                (prefix.parse().unwrap(), attrs)
            })
            .collect(),
    )
}

#[tokio::test]
async fn end_of_rib_follows_the_initial_routes() {
    let (_tx, rx) = watch::channel(routes(&[("198.51.100.10/32", 1)]));
    let (session, mut stream) = established(rx).await;
    assert_eq!(
        next_update(&mut stream).await,
        Some(vec!["198.51.100.10/32".to_owned()])
    );
    assert_eq!(next_update(&mut stream).await, None, "End-of-RIB");
    session.stop().await;
}

#[tokio::test]
async fn end_of_rib_waits_while_a_route_is_skipped_and_follows_its_fix() {
    // 1,100 communities: 4,400 octets, more than one UPDATE holds.
    let (tx, rx) = watch::channel(routes(&[
        ("198.51.100.10/32", 1),
        ("198.51.100.11/32", 1_100),
    ]));
    let (session, mut stream) = established(rx).await;
    assert_eq!(
        next_update(&mut stream).await,
        Some(vec!["198.51.100.10/32".to_owned()])
    );
    assert_eq!(session.status().borrow().advertised, 1);
    // A change: its UPDATE is the next message, so no End-of-RIB came
    // after the initial one.
    tx.send_replace(routes(&[
        ("198.51.100.10/32", 1),
        ("198.51.100.11/32", 1_100),
        ("198.51.100.12/32", 2),
    ]));
    assert_eq!(
        next_update(&mut stream).await,
        Some(vec!["198.51.100.12/32".to_owned()])
    );
    // Fixed: the route, then End-of-RIB.
    tx.send_replace(routes(&[
        ("198.51.100.10/32", 1),
        ("198.51.100.11/32", 3),
        ("198.51.100.12/32", 2),
    ]));
    assert_eq!(
        next_update(&mut stream).await,
        Some(vec!["198.51.100.11/32".to_owned()])
    );
    assert_eq!(next_update(&mut stream).await, None, "End-of-RIB");
    assert_eq!(session.status().borrow().advertised, 3);
    session.stop().await;
}
