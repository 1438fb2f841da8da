//! Receiving a datagram together with the TTL (IPv4) or Hop Limit (IPv6)
//! it arrived with: `IP_RECVTTL` / `IPV6_RECVHOPLIMIT` and a `recvmsg`
//! whose control message carries the value. The one place in this crate
//! that needs `unsafe` (a C `setsockopt` and `recvmsg` with the `CMSG_*`
//! helpers).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;

/// Asks the kernel to attach the TTL / Hop Limit to every datagram.
pub fn enable(socket: &impl AsRawFd, v6: bool) -> io::Result<()> {
    let (level, name) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT)
    } else {
        (libc::IPPROTO_IP, libc::IP_RECVTTL)
    };
    let on: libc::c_int = 1;
    // SAFETY: `on` is a live c_int and the length given is its size; the
    // descriptor is owned by `socket` for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&raw const on).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One datagram: its length in `buf`, its source, and its TTL / Hop Limit
/// when the kernel attached one.
pub fn recv(socket: &impl AsRawFd, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Option<u8>)> {
    // Room for one cmsghdr with an int, with alignment slack.
    let mut control = [0u64; 8];
    // SAFETY: sockaddr_storage and msghdr are plain C structs for which
    // all-zero bytes are a valid value.
    let mut from: libc::sockaddr_storage = unsafe { zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_name = (&raw mut from).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<[u64; 8]>();
    // SAFETY: every pointer in `msg` points at a live buffer of the length
    // given beside it (`buf`, `from`, `control`), all outliving the call.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &raw mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut ttl = None;
    // SAFETY: `msg` was filled by recvmsg, which set msg_controllen to the
    // bytes written into `control`; CMSG_FIRSTHDR/CMSG_NXTHDR stay within
    // that length and return null past it, and CMSG_DATA of a header of
    // the kinds matched holds an int (RFC 3542 §6.3; ip(7) IP_RECVTTL).
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        while !cmsg.is_null() {
            let h = &*cmsg;
            if (h.cmsg_level == libc::IPPROTO_IP && h.cmsg_type == libc::IP_TTL)
                || (h.cmsg_level == libc::IPPROTO_IPV6 && h.cmsg_type == libc::IPV6_HOPLIMIT)
            {
                let value = libc::CMSG_DATA(cmsg).cast::<libc::c_int>().read_unaligned();
                ttl = u8::try_from(value).ok();
            }
            cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
        }
    }
    let source = match libc::c_int::from(from.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in,
            // which is no larger than sockaddr_storage.
            let a: libc::sockaddr_in =
                unsafe { (&raw const from).cast::<libc::sockaddr_in>().read() };
            SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr))),
                u16::from_be(a.sin_port),
            )
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a: libc::sockaddr_in6 =
                unsafe { (&raw const from).cast::<libc::sockaddr_in6>().read() };
            SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr)),
                u16::from_be(a.sin6_port),
            )
        }
        family => {
            return Err(io::Error::other(format!(
                "a datagram from address family {family}"
            )));
        }
    };
    Ok((n as usize, source, ttl))
}
