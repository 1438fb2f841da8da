//! What the raw-peer tests (`collision`, `malformed`) share: the routes
//! Herald announces and reading one BGP message off a connection.

// Each test binary compiles this module separately and uses its own part of
// it; what one binary leaves unused is not dead.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use herald_bgp::rib::{Attributes, Routes};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::timeout;

/// How long a test waits for any one step of Herald's.
pub const WAIT: Duration = Duration::from_secs(10);

/// The routes every session announces: 198.51.100.10/32 without attributes.
pub fn routes() -> watch::Receiver<Arc<Routes>> {
    let mut r = Routes::new();
    r.insert("198.51.100.10/32".parse().unwrap(), Attributes::default());
    // The sender lives as long as the test: leak it.
    let (tx, rx) = watch::channel(Arc::new(r));
    std::mem::forget(tx);
    rx
}

/// Reads one whole BGP message (header and body) from Herald, at most
/// [`WAIT`] for each part.
pub async fn read_message(stream: &mut TcpStream) -> Vec<u8> {
    let mut header = [0u8; 19];
    timeout(WAIT, stream.read_exact(&mut header))
        .await
        .expect("a message from Herald in time")
        .expect("a message header");
    let len = usize::from(u16::from_be_bytes([header[16], header[17]]));
    let mut out = header.to_vec();
    out.resize(len, 0);
    timeout(WAIT, stream.read_exact(&mut out[19..]))
        .await
        .expect("the message body in time")
        .expect("the message body");
    out
}
