//! The TCP sockets of sessions, shared by the session driver and the
//! listeners: connecting with the session's source address, TTL and MD5
//! key; the TTL of an accepted connection; turning a connection away with a
//! NOTIFICATION.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::Duration;

use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::notification::BgpNotificationMessage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::peer::PeerConfig;
use crate::wire;

/// How long a refused connection is drained after its NOTIFICATION, so
/// that closing it with unread input (the peer's OPEN) does not reset it
/// before the NOTIFICATION arrives.
const REFUSE_LINGER: Duration = Duration::from_secs(1);

/// Opens the TCP connection with the configured source address, TTL and
/// MD5 key (all set before the SYN goes out).
pub(crate) async fn connect(config: &PeerConfig) -> std::io::Result<TcpStream> {
    let socket = match config.remote {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(key) = &config.password {
        crate::md5::set_key(&socket, config.remote.ip(), key.as_bytes())?;
    }
    if let Some(ttl) = config.ttl {
        set_ttl(&socket, config.remote.is_ipv6(), ttl)?;
    }
    if let Some(source) = config.source {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    let stream = socket.connect(config.remote).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Sets the IP TTL (IPv6 hop limit) of the packets a socket sends.
pub(crate) fn set_ttl(socket: &impl AsFd, ipv6: bool, ttl: u8) -> std::io::Result<()> {
    let sock = socket2::SockRef::from(socket);
    if ipv6 {
        sock.set_unicast_hops_v6(ttl.into())
    } else {
        sock.set_ttl_v4(ttl.into())
    }
}

/// Sends `notification` on a connection that is being turned away and
/// closes it, in a task of its own.
pub(crate) fn refuse(mut stream: TcpStream, notification: &BgpNotificationMessage) {
    let Ok(bytes) = wire::encode(&BgpMessage::Notification(notification.clone())) else {
        return;
    };
    tokio::spawn(async move {
        let _ = tokio::time::timeout(REFUSE_LINGER, async {
            stream.write_all(&bytes).await?;
            stream.shutdown().await?;
            let mut sink = [0u8; 4096];
            while stream.read(&mut sink).await? > 0 {}
            std::io::Result::Ok(())
        })
        .await;
    });
}
