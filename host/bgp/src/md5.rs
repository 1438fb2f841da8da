//! TCP MD5 signatures (RFC 2385) on a session's socket: Linux's
//! `TCP_MD5SIG` socket option, the one place in this crate that needs
//! `unsafe` (a `setsockopt` with a C struct).

use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use herald_core::bgp::TCP_MD5_MAX_KEY_LEN;

/// `struct tcp_md5sig` of `<linux/tcp.h>`: the peer's address as a
/// `sockaddr_storage`, flags, prefix length, key length, interface index,
/// and the key.
#[repr(C)]
struct TcpMd5Sig {
    addr: [u8; 128],
    flags: u8,
    prefix_len: u8,
    key_len: u16,
    ifindex: i32,
    key: [u8; TCP_MD5_MAX_KEY_LEN],
}

/// Makes the kernel sign every segment to (and require signatures from)
/// `peer` on `socket` with `key`. Set before `connect` (or on a listener
/// before `accept`, where it applies to that peer's connections only, and
/// the accepted sockets inherit it) so that the SYN is signed too.
pub fn set_key(socket: &impl AsRawFd, peer: IpAddr, key: &[u8]) -> io::Result<()> {
    if key.is_empty() || key.len() > TCP_MD5_MAX_KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("TCP MD5 keys are 1 to {TCP_MD5_MAX_KEY_LEN} bytes long"),
        ));
    }
    md5sig(socket, peer, key)
}

/// Removes `peer`'s key from `socket` (a listener whose peer went away):
/// the kernel deletes the key when the length is 0.
pub fn remove_key(socket: &impl AsRawFd, peer: IpAddr) -> io::Result<()> {
    md5sig(socket, peer, &[])
}

/// `setsockopt(TCP_MD5SIG)` with a key of at most
/// [`TCP_MD5_MAX_KEY_LEN`] bytes (checked by the callers).
fn md5sig(socket: &impl AsRawFd, peer: IpAddr, key: &[u8]) -> io::Result<()> {
    let mut sig = TcpMd5Sig {
        addr: [0; 128],
        flags: 0,
        prefix_len: 0,
        // Checked by the callers: at most 80.
        key_len: key.len() as u16,
        ifindex: 0,
        key: [0; TCP_MD5_MAX_KEY_LEN],
    };
    sig.key[..key.len()].copy_from_slice(key);
    // A sockaddr_in / sockaddr_in6: family in host order, port 0, address.
    match peer {
        IpAddr::V4(a) => {
            sig.addr[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            sig.addr[4..8].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            sig.addr[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            sig.addr[8..24].copy_from_slice(&a.octets());
        }
    }
    // SAFETY: `sig` is a live, fully initialised value laid out as the
    // kernel's `struct tcp_md5sig` (repr(C), same field sizes and order),
    // and the length passed is its size; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            (&raw const sig).cast(),
            std::mem::size_of::<TcpMd5Sig>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_matches_the_kernel_layout() {
        // sizeof(struct tcp_md5sig) on Linux.
        assert_eq!(std::mem::size_of::<TcpMd5Sig>(), 216);
    }

    #[test]
    fn key_is_accepted_on_a_tcp_socket_and_too_long_refused() {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        set_key(&socket, "127.0.0.1".parse().unwrap(), b"secret").unwrap();
        let e = set_key(&socket, "127.0.0.1".parse().unwrap(), &[b'x'; 81]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let e = set_key(&socket, "127.0.0.1".parse().unwrap(), b"").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_key_can_be_removed_once() {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = "127.0.0.2".parse().unwrap();
        set_key(&socket, peer, b"secret").unwrap();
        remove_key(&socket, peer).unwrap();
        // Gone: a second removal finds nothing.
        assert!(remove_key(&socket, peer).is_err());
    }
}
