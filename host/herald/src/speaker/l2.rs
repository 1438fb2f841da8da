//! The speaker's L2 driver: answers ARP/NDP for the VIPs this node owns in
//! the current view (`announcements.owned_by(node)`), starting and
//! stopping as views change, and publishes what it answers for to the
//! other speakers. On shutdown it hands over: it tells the others it is
//! leaving and keeps answering until each of its VIPs is claimed by another
//! speaker, or [`HANDOVER_BOUND`] has passed (docs/l2.md, "Handover").

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use herald_core::l2::InterfaceName;
use herald_l2::responder::Announcer;
use herald_membership::Membership;
use tokio::sync::watch;

use super::View;

/// How long a leaving speaker keeps answering while waiting for the new
/// owners to claim its VIPs. The others drop it from their alive set
/// within a gossip round trip of its departure notice and take over at
/// once, so this bound is only reached when no other node is eligible or
/// the gossip is lost; then it keeps a stop from hanging.
pub const HANDOVER_BOUND: Duration = Duration::from_secs(1);

/// Follows the view until shutdown, then hands over.
pub async fn run(
    mut view: watch::Receiver<Arc<View>>,
    mut shutdown: watch::Receiver<bool>,
    membership: Option<Arc<Membership>>,
) {
    let mut announcer = Announcer::new();
    loop {
        let owned: Vec<(IpAddr, Vec<InterfaceName>)> = {
            let v = view.borrow_and_update().clone();
            tracing::debug!(alive = ?v.alive, "view");
            v.announcements
                .owned_by(&v.node)
                .map(|o| (o.vip, o.interfaces.clone()))
                .collect()
        };
        // Errors are logged by the announcer, each naming its VIP or
        // interface; the rest is in effect.
        let _ = announcer.set(&owned).await;
        if let Some(m) = &membership {
            m.claim(&announcer.owned()).await;
        }
        tokio::select! {
            changed = view.changed() => if changed.is_err() { break },
            _ = shutdown.changed() => break,
        }
    }
    if let Some(m) = &membership {
        hand_over(m, &announcer.owned()).await;
    }
    announcer.clear();
}

/// Announces the departure and waits until another speaker claims every
/// VIP in `owned`, at most [`HANDOVER_BOUND`].
async fn hand_over(membership: &Membership, owned: &BTreeSet<IpAddr>) {
    membership.leave().await;
    if owned.is_empty() {
        return;
    }
    let me = membership.node().to_owned();
    let mut peers = membership.peers();
    let taken = tokio::time::timeout(
        HANDOVER_BOUND,
        peers.wait_for(|p| {
            owned.iter().all(|vip| {
                p.claims
                    .get(vip)
                    .is_some_and(|nodes| nodes.iter().any(|n| *n != me))
            })
        }),
    )
    .await;
    match taken {
        Ok(Ok(_)) => tracing::info!(vips = owned.len(), "handed over"),
        _ => tracing::warn!(
            vips = owned.len(),
            "no other speaker claimed every VIP within the handover bound; stopping anyway"
        ),
    }
}
