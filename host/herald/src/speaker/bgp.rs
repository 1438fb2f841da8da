//! The speaker's BGP driver: one session per `BGPPeer` whose nodeSelector
//! matches this node, each advertising this node's routes of the current
//! view for that peer (DESIGN.md §5: next hop self, the advertisement's
//! attributes). A view change updates the routes of running sessions
//! without resetting them; only a change of a peer's own settings restarts
//! its session. The peers' own connections arrive through one set of
//! listening sockets shared by the sessions (`--bgp-listen`, on each peer's
//! port); passive peers only have those. On shutdown the sockets close and
//! every session sends a Cease.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use herald_bgp::rib::{Routes, prefix};
use herald_bgp::{Listeners, PeerConfig, Session};
use herald_core::addr::Family;
use herald_core::bgp::{BgpPeer, Password};
use herald_core::node::Node;
use tokio::sync::watch;

use super::View;

/// The restart time Herald asks graceful-restart peers to keep its routes
/// for (RFC 4724 §3): long enough for a pod to be rescheduled and pull its
/// image, short enough that a node that is really gone is noticed.
const GRACEFUL_RESTART_TIME: u16 = 120;

struct Running {
    config: PeerConfig,
    routes: watch::Sender<Arc<Routes>>,
    session: Session,
}

/// Follows the view until shutdown; the peers' connections are accepted on
/// `listen` (local addresses).
pub async fn run(
    mut view: watch::Receiver<Arc<View>>,
    mut shutdown: watch::Receiver<bool>,
    listen: Vec<IpAddr>,
) {
    let listeners = Listeners::spawn(listen);
    let mut sessions: BTreeMap<String, Running> = BTreeMap::new();
    loop {
        let v = view.borrow_and_update().clone();
        reconcile(&v, &mut sessions).await;
        listeners.set(sessions.values().map(|r| r.session.inbound()).collect());
        tokio::select! {
            changed = view.changed() => if changed.is_err() { break },
            _ = shutdown.changed() => break,
        }
    }
    listeners.stop().await;
    for (name, running) in std::mem::take(&mut sessions) {
        tracing::info!(peer = %name, "stopping the session");
        running.session.stop().await;
    }
}

async fn reconcile(view: &View, sessions: &mut BTreeMap<String, Running>) {
    let node = view.manifests.nodes.iter().find(|n| n.name == view.node);
    let mut wanted: BTreeMap<String, (PeerConfig, Routes)> = BTreeMap::new();
    if let Some(node) = node {
        for peer in &view.manifests.bgp_peers {
            if !peer.node_selector.matches(&node.labels) {
                continue;
            }
            let Some(config) = peer_config(peer, node) else {
                continue;
            };
            wanted.insert(peer.name.clone(), (config, routes_for(view, &peer.name)));
        }
    }
    let names: Vec<String> = sessions.keys().cloned().collect();
    for name in names {
        let keep = wanted
            .get(&name)
            .is_some_and(|(config, _)| *config == sessions[&name].config);
        if !keep && let Some(old) = sessions.remove(&name) {
            tracing::info!(peer = %name, "peer removed or changed: stopping its session");
            old.session.stop().await;
        }
    }
    for (name, (config, routes)) in wanted {
        let routes = Arc::new(routes);
        match sessions.get(&name) {
            Some(running) => {
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
                tracing::info!(peer = %name, remote = %config.remote, passive = config.fsm.passive, routes = routes.len(), "starting a session");
                let (tx, rx) = watch::channel(routes);
                let session = Session::spawn(config.clone(), rx);
                sessions.insert(
                    name,
                    Running {
                        config,
                        routes: tx,
                        session,
                    },
                );
            }
        }
    }
}

/// This node's routes for one peer, keyed by prefix. Two advertisements of
/// one prefix to one peer: the first (by advertisement name) wins.
fn routes_for(view: &View, peer: &str) -> Routes {
    let mut out = Routes::new();
    for r in view.announcements.routes_of(&view.node) {
        if r.peer != peer {
            continue;
        }
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

/// The session settings of `peer` on `node`, or `None` (with a warning)
/// when the node lacks what the session needs.
fn peer_config(peer: &BgpPeer, node: &Node) -> Option<PeerConfig> {
    let node_v4 = node.addresses.iter().find_map(|a| match a {
        IpAddr::V4(a) => Some(*a),
        IpAddr::V6(_) => None,
    });
    let node_v6 = node.addresses.iter().find_map(|a| match a {
        IpAddr::V6(a) => Some(*a),
        IpAddr::V4(_) => None,
    });
    let source_v4 = match peer.source_address {
        Some(IpAddr::V4(a)) => Some(a),
        _ => None,
    };
    let router_id: Option<Ipv4Addr> = peer.router_id.or(source_v4).or(node_v4);
    let Some(router_id) = router_id else {
        tracing::warn!(peer = %peer.name, node = %node.name, "no BGP identifier: set routerID on the BGPPeer or give the Node an IPv4 address");
        return None;
    };
    let password = match &peer.password {
        None => None,
        Some(Password::Inline(p)) => Some(p.clone()),
        Some(Password::Secret(s)) => {
            tracing::warn!(peer = %peer.name, secret = %s.name, "passwordSecret needs the Kubernetes API; standalone mode takes spec.password");
            return None;
        }
    };
    Some(PeerConfig {
        name: peer.name.clone(),
        remote: SocketAddr::new(peer.peer_address, peer.peer_port),
        source: peer.source_address,
        // eBGP peers are one hop away unless ebgpMultiHop says otherwise
        // (the TTL-1 convention of RFC 4271 implementations).
        ttl: peer.ebgp_multihop.or(peer.is_ebgp().then_some(1)),
        password,
        fsm: herald_bgp::Config {
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
        next_hop_v4: node_v4,
        next_hop_v6: node_v6,
    })
}
