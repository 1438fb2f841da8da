//! The speaker's L2 driver: answers ARP/NDP for the VIPs this node owns in
//! the current view. (Filled in by the L2 work; until then it logs what it
//! would own.)

use std::sync::Arc;

use tokio::sync::watch;

use super::View;

/// Follows the view until shutdown.
pub async fn run(mut view: watch::Receiver<Arc<View>>, mut shutdown: watch::Receiver<bool>) {
    loop {
        {
            let v = view.borrow_and_update().clone();
            tracing::debug!(alive = v.alive.len(), "view");
            for o in v.announcements.owned_by(&v.node) {
                tracing::debug!(vip = %o.vip, "owned");
            }
        }
        tokio::select! {
            changed = view.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}
