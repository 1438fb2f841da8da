//! The speaker's BGP driver: one session per `BGPPeer` whose nodeSelector
//! matches this node, each advertising this node's routes of the current
//! view for that peer (DESIGN.md §5: next hop self, the advertisement's
//! attributes). A view change updates the routes of running sessions
//! without resetting them; only a change of a peer's own settings restarts
//! its session. The peers' own connections arrive through one set of
//! listening sockets shared by the sessions (`--bgp-listen`, on each peer's
//! port); passive peers only have those. On shutdown the sockets close and
//! every session sends a Cease. A session's settings (router ID, TTL,
//! graceful restart, the password of a `passwordSecret` as the view holds
//! it) are decided by [`PeerConfig::for_node`]; a peer the node cannot open
//! is logged and left out.
//!
//! A peer with a `bfdProfile` gets a BFD session beside its BGP session
//! ([`bfd_config`]), and the BGP session is guarded by it
//! ([`Session::spawn_guarded`]): a BFD Down takes BGP down at once and
//! holds it in Idle until BFD is Up again. All BFD sessions share the
//! node's receive sockets. A change of the profile's timers alone is
//! negotiated on the running BFD session (poll/final, no flap); any other
//! change restarts both. Stopping a guarded session sends BFD AdminDown
//! first (RFC 5880 §6.8.16), so the router does not take a planned stop
//! for a path failure.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use herald_bfd::{Hop, Receivers, SessionConfig, Timers};
use herald_bgp::rib::{Routes, prefix};
use herald_bgp::{Listeners, PeerConfig, Session};
use herald_core::announce::BgpRoute;
use herald_core::bgp::{BfdProfile, BgpPeer};
use tokio::sync::watch;

use super::View;

struct Running {
    config: PeerConfig,
    routes: watch::Sender<Arc<Routes>>,
    session: Session,
    bfd: Option<Guard>,
}

/// A BGP session's BFD session.
struct Guard {
    config: SessionConfig,
    session: herald_bfd::Session,
}

impl Running {
    /// BFD AdminDown first (a planned stop, not a path failure), then the
    /// BGP session's Cease.
    async fn stop(self) {
        if let Some(guard) = self.bfd {
            guard.session.stop().await;
        }
        self.session.stop().await;
    }
}

/// The BFD session that guards `peer`'s BGP session, if it names a profile
/// (which the loader made sure exists): from the BGP session's source
/// address (else the kernel's choice), single hop, or multihop (RFC 5883)
/// with the profile's minimum TTL when the peer has `ebgpMultiHop`.
fn bfd_config(peer: &BgpPeer, profiles: &BTreeMap<String, BfdProfile>) -> Option<SessionConfig> {
    let profile = profiles.get(peer.bfd_profile.as_ref()?)?;
    let any = match peer.peer_address {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let ms = |ms: u32| Duration::from_millis(ms.into());
    Some(SessionConfig {
        local: peer.source_address.unwrap_or(any),
        peer: peer.peer_address,
        hop: match peer.ebgp_multihop {
            Some(_) => Hop::Multi {
                min_ttl: profile.minimum_ttl,
            },
            None => Hop::Single,
        },
        timers: Timers {
            desired_min_tx: ms(profile.transmit_interval_ms),
            required_min_rx: ms(profile.receive_interval_ms),
            detect_mult: profile.detect_multiplier,
        },
        passive: profile.passive,
    })
}

/// Whether two BFD settings differ in more than their timers.
fn same_but_timers(a: &SessionConfig, b: &SessionConfig) -> bool {
    SessionConfig {
        timers: b.timers,
        ..*a
    } == *b
}

/// Follows the view until shutdown; the peers' connections are accepted on
/// `listen` (local addresses).
pub async fn run(
    mut view: watch::Receiver<Arc<View>>,
    mut shutdown: watch::Receiver<bool>,
    listen: Vec<IpAddr>,
) {
    let listeners = Listeners::spawn(listen);
    let receivers = Receivers::new();
    let mut sessions: BTreeMap<String, Running> = BTreeMap::new();
    loop {
        let v = view.borrow_and_update().clone();
        reconcile(&v, &mut sessions, &receivers).await;
        listeners.set(sessions.values().map(|r| r.session.inbound()).collect());
        tokio::select! {
            changed = view.changed() => if changed.is_err() { break },
            _ = shutdown.changed() => break,
        }
    }
    listeners.stop().await;
    for (name, running) in std::mem::take(&mut sessions) {
        tracing::info!(peer = %name, "stopping the session");
        running.stop().await;
    }
}

/// What one peer's sessions should be.
struct Wanted {
    config: PeerConfig,
    bfd: Option<SessionConfig>,
    routes: Routes,
}

async fn reconcile(view: &View, sessions: &mut BTreeMap<String, Running>, receivers: &Receivers) {
    let node = view.manifests.nodes.iter().find(|n| n.name == view.node);
    let mut wanted: BTreeMap<String, Wanted> = BTreeMap::new();
    let mut by_peer = view.announcements.routes_by_peer(&view.node);
    if let Some(node) = node {
        for peer in &view.manifests.bgp_peers {
            if !peer.node_selector.matches(&node.labels) {
                continue;
            }
            let config = match PeerConfig::for_node(peer, &node.addresses, view.passwords.as_ref())
            {
                Ok(config) => config,
                Err(e) => {
                    tracing::warn!(peer = %peer.name, node = %node.name, error = %e, "no session with this peer");
                    continue;
                }
            };
            wanted.insert(
                peer.name.clone(),
                Wanted {
                    config,
                    bfd: bfd_config(peer, &view.manifests.bfd_profiles),
                    routes: routes_for(&peer.name, by_peer.remove(peer.name.as_str())),
                },
            );
        }
    }
    let names: Vec<String> = sessions.keys().cloned().collect();
    for name in names {
        let keep = wanted.get(&name).is_some_and(|w| {
            let running = &sessions[&name];
            w.config == running.config
                && match (&w.bfd, &running.bfd) {
                    (None, None) => true,
                    (Some(want), Some(guard)) => same_but_timers(want, &guard.config),
                    _ => false,
                }
        });
        if !keep && let Some(old) = sessions.remove(&name) {
            tracing::info!(peer = %name, "peer removed or changed: stopping its session");
            old.stop().await;
        }
    }
    for (
        name,
        Wanted {
            config,
            bfd,
            routes,
        },
    ) in wanted
    {
        let routes = Arc::new(routes);
        match sessions.get_mut(&name) {
            Some(running) => {
                if let (Some(want), Some(guard)) = (bfd, running.bfd.as_mut())
                    && want.timers != guard.config.timers
                {
                    tracing::info!(peer = %name, ?want.timers, "new BFD timers: negotiating them");
                    guard.session.set_timers(want.timers);
                    guard.config = want;
                }
                running.routes.send_if_modified(|current| {
                    if **current == *routes {
                        false
                    } else {
                        *current = routes.clone();
                        true
                    }
                });
            }
            None => {
                let bfd = match bfd
                    .map(|c| herald_bfd::Session::start(receivers, c).map(|s| (c, s)))
                {
                    None => None,
                    Some(Ok((config, session))) => Some(Guard { config, session }),
                    Some(Err(e)) => {
                        tracing::warn!(peer = %name, error = %e, "cannot start the BFD session: no session with this peer");
                        continue;
                    }
                };
                tracing::info!(peer = %name, remote = %config.remote, passive = config.fsm.passive, routes = routes.len(), bfd = bfd.is_some(), "starting a session");
                let (tx, rx) = watch::channel(routes);
                let failed = bfd.as_ref().map(|g| g.session.failed());
                let session = Session::spawn_guarded(config.clone(), rx, failed);
                sessions.insert(
                    name,
                    Running {
                        config,
                        routes: tx,
                        session,
                        bfd,
                    },
                );
            }
        }
    }
}

/// This node's routes for one peer, keyed by prefix. Two advertisements of
/// one prefix to one peer: the first (by advertisement name) wins.
fn routes_for(peer: &str, planned: Option<Vec<&BgpRoute>>) -> Routes {
    let mut out = Routes::new();
    for r in planned.into_iter().flatten() {
        let net = match prefix(r.prefix, r.prefix_len) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(peer, error = %e, "route skipped");
                continue;
            }
        };
        out.entry(net).or_insert_with(|| r.attributes.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use herald_core::bgp::Asn;

    use super::*;

    fn peer(profile: Option<&str>) -> BgpPeer {
        let mut p = BgpPeer::new(
            "tor",
            "2001:db8::1".parse().unwrap(),
            Asn::new(65001).unwrap(),
            Asn::new(65010).unwrap(),
        );
        p.bfd_profile = profile.map(str::to_owned);
        p
    }

    fn profiles() -> BTreeMap<String, BfdProfile> {
        let mut fast = BfdProfile::new("fast");
        fast.receive_interval_ms = 100;
        fast.transmit_interval_ms = 150;
        fast.detect_multiplier = 4;
        fast.minimum_ttl = 250;
        [("fast".to_owned(), fast)].into()
    }

    #[test]
    fn a_peer_with_a_profile_gets_its_bfd_session_single_or_multihop() {
        assert_eq!(bfd_config(&peer(None), &profiles()), None);
        let single = bfd_config(&peer(Some("fast")), &profiles()).unwrap();
        assert_eq!(single.local, IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        assert_eq!(single.peer, "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!(single.hop, Hop::Single);
        assert_eq!(
            single.timers,
            Timers {
                desired_min_tx: Duration::from_millis(150),
                required_min_rx: Duration::from_millis(100),
                detect_mult: 4,
            }
        );
        assert!(!single.passive);
        let mut p = peer(Some("fast"));
        p.ebgp_multihop = Some(3);
        p.source_address = Some("2001:db8::2".parse().unwrap());
        let multi = bfd_config(&p, &profiles()).unwrap();
        assert_eq!(multi.hop, Hop::Multi { min_ttl: 250 });
        assert_eq!(multi.local, "2001:db8::2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn only_a_timer_change_keeps_the_running_bfd_session() {
        let a = bfd_config(&peer(Some("fast")), &profiles()).unwrap();
        let mut b = a;
        b.timers.detect_mult = 9;
        assert!(same_but_timers(&a, &b));
        b.passive = true;
        assert!(!same_but_timers(&a, &b));
    }
}
