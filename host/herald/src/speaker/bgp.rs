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

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use herald_bgp::rib::{Routes, prefix};
use herald_bgp::{Listeners, PeerConfig, Session};
use herald_core::announce::BgpRoute;
use tokio::sync::watch;

use super::View;

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
            let routes = routes_for(&peer.name, by_peer.remove(peer.name.as_str()));
            wanted.insert(peer.name.clone(), (config, routes));
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
