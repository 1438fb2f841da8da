//! The speaker's BGP driver: keeps this node's sessions and advertises its
//! routes of the current view. (Filled in by the BGP speaker work; until
//! then it logs what it would advertise.)

use std::sync::Arc;

use tokio::sync::watch;

use super::View;

/// Follows the view until shutdown.
pub async fn run(mut view: watch::Receiver<Arc<View>>, mut shutdown: watch::Receiver<bool>) {
    loop {
        {
            let v = view.borrow_and_update().clone();
            tracing::debug!(peers = v.manifests.bgp_peers.len(), "view");
            for r in v.announcements.routes_of(&v.node) {
                tracing::debug!(peer = %r.peer, prefix = %r.prefix, len = r.prefix_len, "route");
            }
        }
        tokio::select! {
            changed = view.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}
