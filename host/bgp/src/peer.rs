//! A session's settings ([`PeerConfig`]) and how they follow from a
//! validated `BGPPeer` on one node: the BGP Identifier's fallback, the TTL
//! of eBGP sessions, the graceful-restart time, the next hops of the other
//! family. The speaker only supplies the peer and the node's addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use herald_core::Family;
use herald_core::bgp::{BgpPeer, Password, SecretKeyRef, SecretPasswords};

use crate::fsm;

/// The restart time Herald asks graceful-restart peers to keep its routes
/// for (RFC 4724 §3): long enough for a pod to be rescheduled and pull its
/// image, short enough that a node that is really gone is noticed.
pub const GRACEFUL_RESTART_TIME: u16 = 120;

/// The IP TTL of a directly connected eBGP session's packets: the peer is
/// one hop away (the convention of RFC 4271 implementations; `ebgpMultiHop`
/// raises it).
pub const EBGP_TTL: u8 = 1;

/// A session's settings beyond the state machine's. Its `Debug` hides the
/// MD5 password, so a debug log never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// A name for logs (the `BGPPeer`).
    pub name: String,
    /// The peer's address and port (also the port Herald accepts the
    /// peer's connections on).
    pub remote: SocketAddr,
    /// The local address to connect from, and the only one the peer's
    /// connections are accepted on; `None` lets the kernel choose (and
    /// accepts on any).
    pub source: Option<IpAddr>,
    /// The IP TTL (hop limit) of the session's packets.
    pub ttl: Option<u8>,
    /// TCP MD5 key (RFC 2385).
    pub password: Option<String>,
    /// The state machine's settings.
    pub fsm: fsm::Config,
    /// NEXT_HOP for IPv4 routes when the session is not over IPv4 (next hop
    /// self uses the session's local address otherwise).
    pub next_hop_v4: Option<Ipv4Addr>,
    /// Next hop for IPv6 routes when the session is not over IPv6.
    pub next_hop_v6: Option<Ipv6Addr>,
}

impl std::fmt::Debug for PeerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConfig")
            .field("name", &self.name)
            .field("remote", &self.remote)
            .field("source", &self.source)
            .field("ttl", &self.ttl)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("fsm", &self.fsm)
            .field("next_hop_v4", &self.next_hop_v4)
            .field("next_hop_v6", &self.next_hop_v6)
            .finish()
    }
}

/// Why a node cannot open a session with a peer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerConfigError {
    /// No BGP Identifier: no `routerID`, no IPv4 `sourceAddress`, and the
    /// node has no IPv4 address (RFC 6286 keeps the identifier a 32-bit
    /// number even on IPv6-only sessions).
    #[error("no BGP identifier: set routerID on the BGPPeer or give the Node an IPv4 address")]
    NoRouterId,
    /// The password is in a Secret, which this speaker cannot read.
    #[error(
        "the password is in Secret {}/{} (key {:?}), which needs the Kubernetes API; standalone mode takes spec.password",
        .0.namespace, .0.name, .0.key
    )]
    PasswordInSecret(SecretKeyRef),
    /// The password's Secret could not be used (not found, no such key, an
    /// unusable value) or has not been read yet.
    #[error(
        "the password in Secret {}/{} (key {:?}) is not usable: {reason}",
        .secret.namespace, .secret.name, .secret.key
    )]
    SecretUnusable {
        /// The reference.
        secret: SecretKeyRef,
        /// Why (one line).
        reason: String,
    },
}

impl PeerConfig {
    /// The settings of `peer`'s session on a node with `node_addresses`
    /// (in the Node's order):
    ///
    /// - BGP Identifier: `routerID`, else an IPv4 `sourceAddress`, else the
    ///   node's first IPv4 address;
    /// - TTL: `ebgpMultiHop` when set, [`EBGP_TTL`] on other eBGP sessions,
    ///   the kernel's default on iBGP;
    /// - graceful restart with [`GRACEFUL_RESTART_TIME`] when asked for;
    /// - next hops of either family: the node's first address of it;
    /// - the password: `spec.password`, or the one `secrets` holds for
    ///   `passwordSecret` (the speaker on the API reads them; standalone
    ///   mode has no `secrets` and refuses a `passwordSecret`).
    pub fn for_node(
        peer: &BgpPeer,
        node_addresses: &[IpAddr],
        secrets: Option<&SecretPasswords>,
    ) -> Result<PeerConfig, PeerConfigError> {
        let next_hop_v4 = node_addresses.iter().find_map(|a| match a {
            IpAddr::V4(a) => Some(*a),
            IpAddr::V6(_) => None,
        });
        let next_hop_v6 = node_addresses.iter().find_map(|a| match a {
            IpAddr::V6(a) => Some(*a),
            IpAddr::V4(_) => None,
        });
        let source_v4 = match peer.source_address {
            Some(IpAddr::V4(a)) => Some(a),
            _ => None,
        };
        let router_id = peer
            .router_id
            .or(source_v4)
            .or(next_hop_v4)
            .ok_or(PeerConfigError::NoRouterId)?;
        let password = match &peer.password {
            None => None,
            Some(Password::Inline(p)) => Some(p.clone()),
            Some(Password::Secret(s)) => match secrets.map(|all| all.get(s)) {
                None => return Err(PeerConfigError::PasswordInSecret(s.clone())),
                Some(Some(Ok(p))) => Some(p.clone()),
                Some(Some(Err(reason))) => {
                    return Err(PeerConfigError::SecretUnusable {
                        secret: s.clone(),
                        reason: reason.clone(),
                    });
                }
                Some(None) => {
                    return Err(PeerConfigError::SecretUnusable {
                        secret: s.clone(),
                        reason: "not read yet".to_owned(),
                    });
                }
            },
        };
        Ok(PeerConfig {
            name: peer.name.clone(),
            remote: SocketAddr::new(peer.peer_address, peer.peer_port),
            source: peer.source_address,
            ttl: peer.ebgp_multihop.or(peer.is_ebgp().then_some(EBGP_TTL)),
            password,
            fsm: fsm::Config {
                local_asn: peer.my_asn,
                peer_asn: peer.peer_asn,
                router_id,
                hold_time: peer.hold_time,
                keepalive_time: peer.keepalive_time,
                connect_retry: Duration::from_secs(peer.connect_time.into()),
                graceful_restart: peer.graceful_restart.then_some(GRACEFUL_RESTART_TIME),
                ipv4: peer.families.contains(&Family::IPv4),
                ipv6: peer.families.contains(&Family::IPv6),
                passive: peer.passive,
            },
            next_hop_v4,
            next_hop_v6,
        })
    }
}

#[cfg(test)]
mod tests {
    use herald_core::bgp::Asn;

    use super::*;

    /// An eBGP peer 192.0.2.1 in AS 65001, the node in 65010, defaults.
    fn ebgp() -> BgpPeer {
        BgpPeer::new(
            "tor",
            "192.0.2.1".parse().unwrap(),
            Asn::new(65001).unwrap(),
            Asn::new(65010).unwrap(),
        )
    }

    fn addrs(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn router_id_is_the_peers_then_the_ipv4_source_then_the_nodes_first_ipv4() {
        let node = addrs(&["2001:db8::2", "192.0.2.2", "192.0.2.3"]);
        let id = |peer: &BgpPeer| {
            PeerConfig::for_node(peer, &node, None)
                .unwrap()
                .fsm
                .router_id
        };
        assert_eq!(id(&ebgp()), Ipv4Addr::new(192, 0, 2, 2));
        let mut peer = ebgp();
        peer.source_address = Some("192.0.2.9".parse().unwrap());
        assert_eq!(id(&peer), Ipv4Addr::new(192, 0, 2, 9));
        peer.router_id = Some(Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(id(&peer), Ipv4Addr::new(10, 0, 0, 1));
        // An IPv6 source is no identifier: the node's IPv4 address is.
        let mut peer = ebgp();
        peer.peer_address = "2001:db8::1".parse().unwrap();
        peer.source_address = Some("2001:db8::9".parse().unwrap());
        assert_eq!(id(&peer), Ipv4Addr::new(192, 0, 2, 2));
    }

    #[test]
    fn an_ipv6_only_node_needs_a_router_id() {
        let node = addrs(&["2001:db8::2"]);
        let e = PeerConfig::for_node(&ebgp(), &node, None).unwrap_err();
        assert_eq!(e, PeerConfigError::NoRouterId);
        assert!(e.to_string().contains("routerID"), "{e}");
        let mut peer = ebgp();
        peer.router_id = Some(Ipv4Addr::new(10, 0, 0, 1));
        let config = PeerConfig::for_node(&peer, &node, None).unwrap();
        assert_eq!(config.next_hop_v4, None);
        assert_eq!(config.next_hop_v6, Some("2001:db8::2".parse().unwrap()));
    }

    #[test]
    fn ttl_is_one_on_ebgp_the_multihop_when_set_and_the_kernels_on_ibgp() {
        let node = addrs(&["192.0.2.2"]);
        let ttl = |peer: &BgpPeer| PeerConfig::for_node(peer, &node, None).unwrap().ttl;
        assert_eq!(ttl(&ebgp()), Some(EBGP_TTL));
        let mut peer = ebgp();
        peer.ebgp_multihop = Some(3);
        assert_eq!(ttl(&peer), Some(3));
        let mut peer = ebgp();
        peer.my_asn = peer.peer_asn;
        assert_eq!(ttl(&peer), None);
    }

    #[test]
    fn graceful_restart_time_only_when_asked_for() {
        let node = addrs(&["192.0.2.2"]);
        let gr = |peer: &BgpPeer| {
            PeerConfig::for_node(peer, &node, None)
                .unwrap()
                .fsm
                .graceful_restart
        };
        assert_eq!(gr(&ebgp()), None);
        let mut peer = ebgp();
        peer.graceful_restart = true;
        assert_eq!(gr(&peer), Some(GRACEFUL_RESTART_TIME));
    }

    #[test]
    fn the_rest_is_taken_from_the_peer() {
        let mut peer = ebgp();
        peer.peer_port = 1179;
        peer.connect_time = 7;
        peer.families = vec![Family::IPv6];
        peer.passive = true;
        peer.password = Some(Password::Inline("s3cret".into()));
        let config =
            PeerConfig::for_node(&peer, &addrs(&["192.0.2.2", "2001:db8::2"]), None).unwrap();
        assert_eq!(config.name, "tor");
        assert_eq!(config.remote, "192.0.2.1:1179".parse().unwrap());
        assert_eq!(config.password.as_deref(), Some("s3cret"));
        assert_eq!(config.fsm.connect_retry, Duration::from_secs(7));
        assert_eq!((config.fsm.ipv4, config.fsm.ipv6), (false, true));
        assert!(config.fsm.passive);
        assert_eq!(
            (config.fsm.local_asn.get(), config.fsm.peer_asn.get()),
            (65010, 65001)
        );
        assert_eq!((config.fsm.hold_time, config.fsm.keepalive_time), (90, 30));
        assert_eq!(config.next_hop_v4, Some(Ipv4Addr::new(192, 0, 2, 2)));
    }

    #[test]
    fn a_secret_password_is_refused_by_name() {
        let mut peer = ebgp();
        peer.password = Some(Password::Secret(SecretKeyRef {
            namespace: "herald".into(),
            name: "tor-md5".into(),
            key: "password".into(),
        }));
        let e = PeerConfig::for_node(&peer, &addrs(&["192.0.2.2"]), None).unwrap_err();
        assert!(matches!(e, PeerConfigError::PasswordInSecret(_)), "{e:?}");
        assert!(e.to_string().contains("herald/tor-md5"), "{e}");
    }

    #[test]
    fn a_secret_password_is_taken_once_read_and_its_problem_named_otherwise() {
        let secret = SecretKeyRef {
            namespace: "herald".into(),
            name: "tor-md5".into(),
            key: "password".into(),
        };
        let mut peer = ebgp();
        peer.password = Some(Password::Secret(secret.clone()));
        let node = addrs(&["192.0.2.2"]);
        let mut secrets = SecretPasswords::default();
        let e = PeerConfig::for_node(&peer, &node, Some(&secrets)).unwrap_err();
        assert!(e.to_string().contains("not read yet"), "{e}");
        secrets.insert(
            secret.clone(),
            Err("Secret herald/tor-md5 not found".into()),
        );
        let e = PeerConfig::for_node(&peer, &node, Some(&secrets)).unwrap_err();
        assert!(e.to_string().contains("not found"), "{e}");
        secrets.insert(secret, Ok("s3cret".into()));
        let config = PeerConfig::for_node(&peer, &node, Some(&secrets)).unwrap();
        assert_eq!(config.password.as_deref(), Some("s3cret"));
        assert!(!format!("{secrets:?}").contains("s3cret"));
    }

    #[test]
    fn debug_output_never_shows_the_md5_password() {
        let mut peer = ebgp();
        peer.password = Some(Password::Inline("s3cret-md5-key".into()));
        let config = PeerConfig::for_node(&peer, &addrs(&["192.0.2.2"]), None).unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
