//! `herald speaker` in standalone mode: a node's speaker fed from a
//! manifests directory (DESIGN.md §7).
//!
//! Tasks and channels:
//!
//! ```text
//! manifests dir ──events──► reload ──► announce() ──► watch<Arc<View>> ──┬─► bgp::run  (sessions, RIB-out, listeners)
//!                               ▲          ▲                             └─► l2::run   (ARP/NDP owner)
//!              membership ──────┘          └── plugin registry (announcer plugins, synced on reload)
//!              (alive speakers)
//! SIGTERM/SIGINT ──► shutdown ──► drivers withdraw / hand over, then exit
//! ```
//!
//! Changes are noticed from inotify events, debounced, with a slow poll
//! behind them (`changes`): a change reaches the drivers within tens of
//! milliseconds, and within a second wherever events are missing.
//!
//! A change that does not load (a file that does not parse, an object that
//! does not fit its kind) changes nothing: the speaker keeps the whole last
//! good view, announcing and withdrawing nothing, says why (file, line,
//! object), and tries again at the next change. The reload also waits for a
//! file's writer to close it, so a file read mid-write is rare; one that
//! parses anyway (cut at a document boundary) is replaced by the complete
//! one a moment later, when its writer closes it. Writing to a temporary
//! file and renaming it into place avoids even that.
//!
//! Planning runs in `block_in_place`: loading a changed plugin compiles it
//! (off the tasks that keep sessions alive), and a plugin call blocks —
//! wasmtime-wasi's standard streams, which a plugin's panic message goes
//! through, block on the ambient runtime and must not be called on one of
//! its workers (herald-policy's crate docs).
//!
//! Announcer plugins (`PolicyPlugin`s named by an advertisement's
//! `announcerPlugin`) decide in the speaker as in `herald plan`: they live
//! in a [`Registry`], synced with the manifests on every reload. A changed
//! plugin is replaced in place and the next plan uses it; as the drivers
//! act only on the difference, a replacement that changes announcements
//! changes routes and owners without resetting a session. A plugin that
//! fails follows its `failurePolicy` (`Fallback`: the built-in policy
//! decides; `Fail`: the VIP is not announced) and is logged by name on
//! every plan that met the failure.
//!
//! Drivers act only on the difference between views.

mod bgp;
mod changes;
mod l2;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use herald_api::load::{Manifests, load_paths};
use herald_core::Config;
use herald_core::announce::{AnnounceInput, Announcements, announce};
use herald_membership::Membership;
use herald_policy::Registry;
use tokio::sync::watch;

/// How long a starting speaker waits to hear from every other member
/// before it plans: one that planned alone would own every VIP for a
/// moment. A few gossip rounds suffice when the others are up; when they
/// are not, this bounds the wait.
const SETTLE_BOUND: Duration = Duration::from_millis(500);

/// How often plugins that failed to load are tried again while nothing
/// changes: soon enough that a passing failure is short, seldom enough that
/// a broken plugin costs nothing noticeable.
const PLUGIN_RETRY: Duration = Duration::from_secs(10);

/// Flags of `herald speaker`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// This node's name (the Node object in the manifests).
    #[arg(long, env = "HERALD_NODE")]
    node: String,
    /// The manifests directory (standalone mode): Node, Services with
    /// status, EndpointSlices, IPPools, BGPPeers, advertisements.
    #[arg(long, env = "HERALD_MANIFESTS")]
    manifests: PathBuf,
    /// The loadBalancerClass Herald serves.
    #[arg(long, default_value = herald_core::config::DEFAULT_LOAD_BALANCER_CLASS, env = "HERALD_LOAD_BALANCER_CLASS")]
    load_balancer_class: String,
    /// The address this speaker gossips on (membership between speakers);
    /// the other speakers list it in their `--members`. Without it every
    /// node in the manifests counts as alive.
    #[arg(long, env = "HERALD_GOSSIP_BIND", requires = "members")]
    gossip_bind: Option<SocketAddr>,
    /// Every speaker's gossip address (this one's may be included).
    #[arg(
        long,
        env = "HERALD_MEMBERS",
        value_delimiter = ',',
        requires = "gossip_bind"
    )]
    members: Vec<SocketAddr>,
    /// The local addresses on which routers' BGP connections are accepted
    /// (each on the port of its BGPPeers, 179 by default). Active peers
    /// are accepted there too; passive peers only connect there.
    #[arg(
        long,
        env = "HERALD_BGP_LISTEN",
        value_delimiter = ',',
        default_value = "0.0.0.0,::"
    )]
    bgp_listen: Vec<IpAddr>,
}

/// What the drivers act on: the latest manifests and this node's share of
/// the announcement plan.
#[derive(Debug, Default)]
pub struct View {
    /// This node's name.
    pub node: String,
    /// The manifests the plan was made from.
    pub manifests: Manifests,
    /// The whole plan (drivers pick their node's part).
    pub announcements: Announcements,
    /// The speakers considered alive.
    pub alive: BTreeSet<String>,
}

/// Runs the speaker until SIGTERM or SIGINT.
pub fn run(args: Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> ExitCode {
    let config = Config {
        load_balancer_class: args.load_balancer_class.clone(),
    };
    // Watching starts before the first load, so no change is missed.
    let mut changes = changes::Changes::new(&args.manifests);
    let manifests = match load_paths(&[&args.manifests]) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "cannot load the manifests");
            return ExitCode::from(crate::EXIT_INVALID_INPUT);
        }
    };
    if !manifests.nodes.iter().any(|n| n.name == args.node) {
        tracing::warn!(node = %args.node, "no Node object for this node in the manifests yet: nothing is announced until one appears");
    }
    let membership = match args.gossip_bind {
        Some(bind) => match Membership::join(&args.node, bind, &args.members).await {
            Ok(m) => {
                m.settle(SETTLE_BOUND).await;
                Some(Arc::new(m))
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot join the speakers' membership");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let mut peers = membership.as_ref().map(|m| m.peers());
    let alive = |peers: &mut Option<watch::Receiver<herald_membership::Peers>>| {
        peers.as_mut().map(|p| p.borrow_and_update().alive.clone())
    };
    let mut registry = Registry::new();
    let first = reload(
        &args.node,
        manifests,
        &config,
        &mut registry,
        alive(&mut peers),
    );
    let (view_tx, view_rx) = watch::channel(Arc::new(first));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let bgp = tokio::spawn(bgp::run(
        view_rx.clone(),
        shutdown_rx.clone(),
        args.bgp_listen.clone(),
    ));
    let l2 = tokio::spawn(l2::run(view_rx, shutdown_rx, membership.clone()));

    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                return ExitCode::FAILURE;
            }
        };
    loop {
        let planned = view_tx.borrow().alive.clone();
        tokio::select! {
            () = changes.next() => {
                match load_paths(&[&args.manifests]) {
                    Ok(m) => {
                        let view = reload(&args.node, m, &config, &mut registry, alive(&mut peers));
                        tracing::info!(routes = view.announcements.routes_of(&args.node).count(), owned = view.announcements.owned_by(&args.node).count(), "manifests changed");
                        view_tx.send_replace(Arc::new(view));
                    }
                    Err(e) => tracing::warn!(error = %e, "manifests changed but do not load; keeping the last good ones"),
                }
            }
            // A plugin that did not load is tried again now and then
            // (its file may arrive late, a first call may have run out of
            // time on a loaded machine), not only at the next change.
            () = tokio::time::sleep(PLUGIN_RETRY), if registry.has_failures() => {
                let manifests = view_tx.borrow().manifests.clone();
                let view = reload(&args.node, manifests, &config, &mut registry, alive(&mut peers));
                view_tx.send_replace(Arc::new(view));
            }
            Some(()) = membership_changed(&mut peers, planned) => {
                let manifests = view_tx.borrow().manifests.clone();
                let view = reload(&args.node, manifests, &config, &mut registry, alive(&mut peers));
                tracing::info!(alive = ?view.alive, owned = view.announcements.owned_by(&args.node).count(), "membership changed");
                view_tx.send_replace(Arc::new(view));
            }
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    tracing::info!("stopping: withdrawing and handing over");
    let _ = shutdown_tx.send(true);
    let _ = tokio::join!(bgp, l2);
    ExitCode::SUCCESS
}

/// Waits until the alive set differs from `planned`, the one the current
/// view was planned with (never, without membership; `None` when the
/// gossip layer is gone).
async fn membership_changed(
    peers: &mut Option<watch::Receiver<herald_membership::Peers>>,
    planned: BTreeSet<String>,
) -> Option<()> {
    let Some(p) = peers.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        if p.borrow_and_update().alive != planned {
            return Some(());
        }
        p.changed().await.ok()?;
    }
}

/// Brings the plugins to the manifests' `PolicyPlugin`s (a changed one is
/// replaced in place; one that does not load is logged, and the version
/// running before keeps running), then plans with them. In
/// `block_in_place`: loading compiles, and plugin calls block (module docs).
fn reload(
    node: &str,
    manifests: Manifests,
    config: &Config,
    registry: &mut Registry,
    alive: Option<BTreeSet<String>>,
) -> View {
    tokio::task::block_in_place(|| {
        for e in registry.sync(&manifests.plugins) {
            tracing::warn!(plugin = %e.name, "{}", e.message);
        }
        plan(node, manifests, config, registry, alive)
    })
}

/// Plans the announcements of `manifests` with the plugins of `registry`
/// and the speakers `alive` from membership; without membership every node
/// in the manifests counts as alive.
fn plan(
    node: &str,
    manifests: Manifests,
    config: &Config,
    registry: &Registry,
    alive: Option<BTreeSet<String>>,
) -> View {
    let alive: BTreeSet<String> =
        alive.unwrap_or_else(|| manifests.nodes.iter().map(|n| n.name.clone()).collect());
    let announcements = announce(
        &AnnounceInput {
            pools: &manifests.snapshot.pools,
            services: &manifests.snapshot.services,
            nodes: &manifests.nodes,
            alive: &alive,
            endpoints: &manifests.endpoints,
            peers: &manifests.bgp_peers,
            bgp: &manifests.bgp_advertisements,
            l2: &manifests.l2_advertisements,
        },
        config,
        &registry.policies(),
    );
    for e in &announcements.errors {
        tracing::warn!(kind = %e.kind, name = %e.name, "{}", e.message);
    }
    View {
        node: node.to_owned(),
        manifests,
        announcements,
        alive,
    }
}
