//! A raw TCP peer on loopback that misbehaves: Herald's session must answer
//! each malformed or unexpected message with the NOTIFICATION RFC 4271 §6
//! (and RFC 6608) prescribes, reconnect with backoff, and keep its other
//! sessions up.

mod raw_peer;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use herald_bgp::{Config, PeerConfig, Session, State};
use herald_core::bgp::Asn;
use raw_peer::{WAIT, read_message, routes};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const PEER_ASN: u32 = 65001;

fn config(name: &str, remote: SocketAddr) -> PeerConfig {
    PeerConfig {
        name: name.to_owned(),
        remote,
        source: None,
        ttl: None,
        password: None,
        fsm: Config {
            local_asn: Asn::new(4_200_000_001).unwrap(),
            peer_asn: Asn::new(PEER_ASN).unwrap(),
            router_id: Ipv4Addr::new(192, 0, 2, 2),
            hold_time: 90,
            keepalive_time: 30,
            connect_retry: Duration::from_secs(1),
            graceful_restart: None,
            ipv4: true,
            ipv6: true,
            passive: false,
        },
        next_hop_v4: Some(Ipv4Addr::new(192, 0, 2, 2)),
        next_hop_v6: None,
    }
}

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0xff; 16];
    out.extend_from_slice(&u16::try_from(19 + body.len()).unwrap().to_be_bytes());
    out.push(kind);
    out.extend_from_slice(body);
    out
}

/// An OPEN: version, AS, hold time, identifier 192.0.2.1, with the
/// IPv4-unicast and 4-octet-AS capabilities.
fn open(version: u8, asn: u32, hold: u16) -> Vec<u8> {
    let mut caps = vec![1, 4, 0, 1, 0, 1, 65, 4];
    caps.extend_from_slice(&asn.to_be_bytes());
    let mut body = vec![version];
    body.extend_from_slice(&u16::try_from(asn).unwrap_or(23456).to_be_bytes());
    body.extend_from_slice(&hold.to_be_bytes());
    body.extend_from_slice(&[192, 0, 2, 1]);
    body.push(u8::try_from(caps.len() + 2).unwrap());
    body.push(2);
    body.push(u8::try_from(caps.len()).unwrap());
    body.extend_from_slice(&caps);
    message(1, &body)
}

/// Accepts Herald's connection and reads its OPEN.
async fn accept(listener: &TcpListener) -> TcpStream {
    let (mut stream, _) = timeout(WAIT, listener.accept())
        .await
        .expect("Herald to connect (again) in time")
        .unwrap();
    let open = read_message(&mut stream).await;
    assert_eq!(open[18], 1, "Herald's first message is an OPEN");
    stream
}

/// Brings the session to Established and returns the stream.
async fn establish(listener: &TcpListener) -> TcpStream {
    let mut stream = accept(listener).await;
    stream.write_all(&open(4, PEER_ASN, 90)).await.unwrap();
    stream.write_all(&message(4, &[])).await.unwrap();
    let keepalive = read_message(&mut stream).await;
    assert_eq!(keepalive[18], 4, "KEEPALIVE after our OPEN");
    stream
}

/// Reads until a NOTIFICATION arrives; returns (code, subcode, data).
async fn notification(stream: &mut TcpStream) -> (u8, u8, Vec<u8>) {
    loop {
        let m = read_message(stream).await;
        if m[18] == 3 {
            return (m[19], m[20], m[21..].to_vec());
        }
    }
}

#[tokio::test]
async fn malformed_messages_get_the_prescribed_notification_and_others_stay_up() {
    // A well-behaved peer whose session must survive everything below.
    let good = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let good_session = Session::spawn(config("good", good.local_addr().unwrap()), routes());
    let mut good_stream = establish(&good).await;
    let mut status = good_session.status();
    timeout(WAIT, status.wait_for(|s| s.state == State::Established))
        .await
        .unwrap()
        .unwrap();

    let bad = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bad_session = Session::spawn(config("bad", bad.local_addr().unwrap()), routes());

    // OPEN with version 3: Unsupported Version Number, data = the version
    // we support (RFC 4271 §6.2).
    let mut s = accept(&bad).await;
    s.write_all(&open(3, PEER_ASN, 90)).await.unwrap();
    assert_eq!(notification(&mut s).await, (2, 1, vec![0, 4]));

    // OPEN from the wrong AS: Bad Peer AS.
    let mut s = accept(&bad).await;
    s.write_all(&open(4, 65002, 90)).await.unwrap();
    let (code, subcode, _) = notification(&mut s).await;
    assert_eq!((code, subcode), (2, 2));

    // Hold time 2: Unacceptable Hold Time.
    let mut s = accept(&bad).await;
    s.write_all(&open(4, PEER_ASN, 2)).await.unwrap();
    let (code, subcode, _) = notification(&mut s).await;
    assert_eq!((code, subcode), (2, 6));

    // An oversized message: Bad Message Length with the length as data
    // (§6.1).
    let mut s = establish(&bad).await;
    let mut big = vec![0xff; 16];
    big.extend_from_slice(&5000u16.to_be_bytes());
    big.push(2);
    big.resize(5000, 0);
    s.write_all(&big).await.unwrap();
    assert_eq!(notification(&mut s).await, (1, 2, vec![0x13, 0x88]));

    // A broken marker: Connection Not Synchronized.
    let mut s = establish(&bad).await;
    let mut unsynced = message(4, &[]);
    unsynced[0] = 0;
    s.write_all(&unsynced).await.unwrap();
    let (code, subcode, _) = notification(&mut s).await;
    assert_eq!((code, subcode), (1, 1));

    // An UPDATE whose attribute list overruns the message: UPDATE Message
    // Error (§6.3).
    let mut s = establish(&bad).await;
    s.write_all(&message(2, &[0, 0, 0, 200, 0x40, 1, 1, 0]))
        .await
        .unwrap();
    let (code, _, _) = notification(&mut s).await;
    assert_eq!(code, 3, "UPDATE Message Error");

    // An UPDATE with an ORIGIN of 7: Invalid ORIGIN Attribute (§6.3).
    let mut s = establish(&bad).await;
    let mut update = vec![0, 0, 0, 4, 0x40, 1, 1, 7];
    update.extend_from_slice(&[24, 198, 51, 100]);
    s.write_all(&message(2, &update)).await.unwrap();
    let (code, _, _) = notification(&mut s).await;
    assert_eq!(code, 3, "UPDATE Message Error");

    // A second OPEN on an Established session: FSM Error, "unexpected
    // message in Established" (RFC 6608).
    let mut s = establish(&bad).await;
    s.write_all(&open(4, PEER_ASN, 90)).await.unwrap();
    let (code, subcode, _) = notification(&mut s).await;
    assert_eq!((code, subcode), (5, 3));

    // An unknown message type: Bad Message Type with the type as data.
    let mut s = establish(&bad).await;
    s.write_all(&message(9, &[])).await.unwrap();
    assert_eq!(notification(&mut s).await, (1, 3, vec![9]));

    // Herald reconnected after every error, and the good session never
    // noticed.
    let _s = accept(&bad).await;
    let now = status.borrow().clone();
    assert_eq!(now.state, State::Established);
    assert_eq!(now.established, 1);
    good_stream.write_all(&message(4, &[])).await.unwrap();

    // Stopping a session sends Cease / Administrative Shutdown.
    good_session.stop().await;
    let (code, subcode, _) = notification(&mut good_stream).await;
    assert_eq!((code, subcode), (6, 2));
    bad_session.stop().await;
}
