//! Herald's speaker membership: which speakers are alive, learnt by gossip
//! between speakers over UDP (chitchat: scuttlebutt anti-entropy with a
//! phi-accrual failure detector). Every speaker lists every speaker's
//! gossip address (`--members`); the node name is the member's identity.
//! Announcement planning takes the alive set as an input, for BGP and L2
//! alike; the L2 handover also uses the VIP claims.
//!
//! Besides liveness, each speaker publishes two kinds of keys:
//! - `leaving`: set when the speaker is stopping; others drop it from the
//!   alive set at once instead of waiting for the failure detector;
//! - `vip/ADDR`: the VIPs it answers for; a leaving speaker keeps
//!   answering until another has claimed each of its VIPs (the handover).
//!
//! Tuning (docs/l2.md, "Membership"): see the constants below.
//!
//! Depends on chitchat (gossip), tokio and tracing only; never on the core,
//! the API types, Kubernetes, or the BGP and L2 code.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chitchat::transport::UdpTransport;
use chitchat::{
    ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, NodeState, ProtocolVersion,
    spawn_chitchat,
};
use tokio::sync::watch;

/// What went wrong in the gossip layer, and where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Gossip could not start.
    #[error("membership: {what}: {message}")]
    Gossip {
        /// The step.
        what: String,
        /// Why.
        message: String,
    },
}

/// How often a speaker gossips (to every other speaker in clusters of up
/// to three, to three random ones beyond). Each round carries its
/// heartbeat, so peers see a heartbeat about this often. 25 ms is ~40
/// small datagrams a second per peer: nothing for a node, and it makes the
/// detection bound below a quarter of a second.
pub const GOSSIP_INTERVAL: Duration = Duration::from_millis(25);

/// Chitchat's phi is the silence since the last heartbeat divided by the
/// mean interval between heartbeat reports; a peer is dead when phi
/// exceeds this. A peer's heartbeat reaches us both in its gossip round
/// and in ours, so with three speakers the mean measured here is about
/// 12 ms and 10 means ~125 ms of silence (five missed rounds), found at
/// the next round. Scheduling hiccups on a loaded 2-core machine reach
/// 100 ms and more; they stall this process as a whole, which the stall
/// watch below catches (at 10 without it, a loaded machine saw false
/// suspicion; at 10 with it, none in `a_loaded_machine_causes_no_false_suspicion`
/// nor in 60 s of `scripts/bench-l2.sh stability`).
pub const PHI_THRESHOLD: f64 = 10.0;

/// The heartbeat intervals the mean is taken over: 200 rounds, five
/// seconds of history, so one slow round barely moves the mean.
const SAMPLING_WINDOW: usize = 200;

/// Intervals longer than this (a peer that was down) are not samples of
/// its normal rhythm.
const MAX_INTERVAL: Duration = Duration::from_secs(1);

/// How long a dead member's state is kept (its generation is new when it
/// comes back, so this only bounds memory).
const DEAD_NODE_GRACE: Duration = Duration::from_secs(3600);

/// How long deleted keys (released VIP claims) are remembered.
const TOMBSTONE_GRACE: Duration = Duration::from_secs(3600);

/// How often the stall watch checks that this process gets to run.
const STALL_TICK: Duration = Duration::from_millis(10);

/// A tick this much late means this process was not running: its own
/// silence, not its peers', may have made them look dead.
const STALL: Duration = Duration::from_millis(100);

/// After a stall of this process, a peer that dropped out is re-checked
/// this much later before the drop is believed: long enough for the
/// peers' heartbeats that queued up meanwhile to be read and the failure
/// detector to revive them (a few gossip rounds), short enough that a
/// real failure seen during a stall is still acted on within a second.
const STALL_RECHECK: Duration = Duration::from_millis(200);

/// The cluster name in every gossip message.
const CLUSTER: &str = "herald";

/// Key set by a speaker that is stopping.
const LEAVING: &str = "leaving";

/// Prefix of the keys naming the VIPs a speaker answers for.
const CLAIM: &str = "vip/";

/// What the gossip layer knows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peers {
    /// The speakers alive and not leaving, by node name (this one
    /// included, unless it is leaving).
    pub alive: BTreeSet<String>,
    /// For each VIP, the live speakers that say they answer for it.
    pub claims: BTreeMap<IpAddr, BTreeSet<String>>,
}

/// This speaker's membership.
pub struct Membership {
    handle: ChitchatHandle,
    node: String,
    others: Vec<SocketAddr>,
    peers: watch::Receiver<Peers>,
}

impl Membership {
    /// Starts gossiping on `bind` (the address the other speakers list in
    /// their `members`) as `node`, with `members` (every speaker's gossip
    /// address; this one may be among them).
    pub async fn join(
        node: &str,
        bind: SocketAddr,
        members: &[SocketAddr],
    ) -> Result<Membership, Error> {
        let generation = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let others: Vec<SocketAddr> = members.iter().copied().filter(|m| *m != bind).collect();
        let config = ChitchatConfig {
            chitchat_id: ChitchatId::new(node.to_owned(), generation, bind),
            cluster_id: CLUSTER.into(),
            gossip_interval: GOSSIP_INTERVAL,
            listen_addr: bind,
            seed_nodes: others.iter().map(ToString::to_string).collect(),
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: PHI_THRESHOLD,
                sampling_window_size: SAMPLING_WINDOW,
                max_interval: MAX_INTERVAL,
                initial_interval: GOSSIP_INTERVAL,
                dead_node_grace_period: DEAD_NODE_GRACE,
            },
            marked_for_deletion_grace_period: TOMBSTONE_GRACE,
            catchup_callback: None,
            extra_liveness_predicate: Some(Box::new(|state: &NodeState| {
                state.get(LEAVING).is_none()
            })),
            protocol_version: ProtocolVersion::V0,
        };
        let handle = spawn_chitchat(config, Vec::new(), &UdpTransport)
            .await
            .map_err(|e| Error::Gossip {
                what: format!("starting gossip on {bind}"),
                message: format!("{e:#}"),
            })?;
        let mut live = handle.chitchat().lock().await.live_nodes_watcher();
        let (tx, peers) = watch::channel(Peers {
            alive: BTreeSet::from([node.to_owned()]),
            claims: BTreeMap::new(),
        });
        let stalls = StallWatch::start();
        tokio::spawn(async move {
            loop {
                let now = peers_of(&live.borrow_and_update());
                let dropped = !tx.borrow().alive.is_subset(&now.alive);
                if dropped {
                    // Let the stall watch see a stall that just ended.
                    tokio::time::sleep(STALL_TICK).await;
                }
                if dropped && stalls.recent(STALL_RECHECK) {
                    tracing::info!("peers dropped out while this speaker was stalled: re-checking");
                    tokio::time::sleep(STALL_RECHECK).await;
                    continue;
                }
                tx.send_if_modified(|p| {
                    let changed = *p != now;
                    *p = now;
                    changed
                });
                if live.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(Membership {
            handle,
            node: node.to_owned(),
            others,
            peers,
        })
    }

    /// Follows what the gossip layer knows.
    pub fn peers(&self) -> watch::Receiver<Peers> {
        self.peers.clone()
    }

    /// This speaker's node name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Publishes that this speaker answers for exactly `vips`.
    pub async fn claim(&self, vips: &BTreeSet<IpAddr>) {
        let chitchat = self.handle.chitchat();
        let mut chitchat = chitchat.lock().await;
        let state = chitchat.self_node_state();
        let held: Vec<String> = state
            .key_values()
            .filter(|(k, _)| k.starts_with(CLAIM))
            .map(|(k, _)| k.to_owned())
            .collect();
        for key in &held {
            let still = key[CLAIM.len()..]
                .parse::<IpAddr>()
                .is_ok_and(|ip| vips.contains(&ip));
            if !still {
                state.delete(key);
            }
        }
        for vip in vips {
            let key = format!("{CLAIM}{vip}");
            if state.get(&key).is_none() {
                state.set(key, "");
            }
        }
    }

    /// Tells every other speaker that this one is leaving, at once (not
    /// waiting for the next gossip round).
    pub async fn leave(&self) {
        self.handle
            .chitchat()
            .lock()
            .await
            .self_node_state()
            .set(LEAVING, "true");
        for addr in &self.others {
            if let Err(e) = self.handle.gossip(*addr) {
                tracing::debug!(%addr, error = %e, "cannot push the departure");
            }
        }
    }

    /// Waits until every member is alive, at most `bound`: a speaker that
    /// starts answering before it has heard of the others would claim
    /// every VIP for a moment.
    pub async fn settle(&self, bound: Duration) {
        let expected = self.others.len() + 1;
        let mut peers = self.peers();
        let _ = tokio::time::timeout(bound, peers.wait_for(|p| p.alive.len() >= expected)).await;
    }

    /// Stops gossiping.
    pub async fn shutdown(self) {
        if let Err(e) = self.handle.shutdown().await {
            tracing::debug!(error = %e, "gossip stopped with an error");
        }
    }
}

/// Remembers when this process last did not get to run (see [`STALL`]).
#[derive(Clone)]
struct StallWatch {
    start: std::time::Instant,
    /// Milliseconds from `start` to the end of the last stall, plus one
    /// (zero: never).
    last: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl StallWatch {
    fn start() -> StallWatch {
        let watch = StallWatch {
            start: std::time::Instant::now(),
            last: Default::default(),
        };
        let w = watch.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(STALL_TICK);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut before = std::time::Instant::now();
            loop {
                ticker.tick().await;
                let now = std::time::Instant::now();
                if now.duration_since(before) > STALL_TICK + STALL {
                    let at = now.duration_since(w.start).as_millis() as u64 + 1;
                    w.last.store(at, std::sync::atomic::Ordering::Relaxed);
                    tracing::debug!(late = ?now.duration_since(before), "speaker stalled");
                }
                before = now;
            }
        });
        watch
    }

    /// Whether a stall ended less than `within` ago.
    fn recent(&self, within: Duration) -> bool {
        let last = self.last.load(std::sync::atomic::Ordering::Relaxed);
        last != 0 && self.start.elapsed().as_millis() as u64 + 1 - last < within.as_millis() as u64
    }
}

/// The live members' names and claims.
fn peers_of(live: &BTreeMap<ChitchatId, NodeState>) -> Peers {
    let mut out = Peers::default();
    for (id, state) in live {
        let name = id.node_id.to_string();
        for (key, _) in state.key_values() {
            if let Some(Ok(ip)) = key.strip_prefix(CLAIM).map(str::parse::<IpAddr>) {
                out.claims.entry(ip).or_default().insert(name.clone());
            }
        }
        out.alive.insert(name);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, port: u16, keys: &[&str]) -> (ChitchatId, NodeState) {
        let id = ChitchatId::new(name.to_owned(), 1, SocketAddr::from(([192, 0, 2, 1], port)));
        let mut state = NodeState::for_test();
        for key in keys {
            state.set(*key, "");
        }
        (id, state)
    }

    #[test]
    fn peers_are_the_live_members_and_their_vip_claims() {
        let (a, mut a_state) = member("a", 1, &["vip/198.51.100.1", "vip/2001:db8::1"]);
        a_state.delete("vip/2001:db8::1");
        let (b, b_state) = member("b", 2, &["vip/198.51.100.1", "vip/not-an-ip", "other"]);
        let (c, c_state) = member("c", 3, &[]);
        let live = BTreeMap::from([(a, a_state), (b, b_state), (c, c_state)]);
        let peers = peers_of(&live);
        assert_eq!(
            peers.alive,
            BTreeSet::from(["a".to_owned(), "b".to_owned(), "c".to_owned()])
        );
        let vip: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(
            peers.claims,
            BTreeMap::from([(vip, BTreeSet::from(["a".to_owned(), "b".to_owned()]))]),
            "a released claim and malformed keys claim nothing"
        );
    }
}
