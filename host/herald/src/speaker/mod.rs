//! `herald speaker`: a node's speaker (DESIGN.md §7), fed from a manifests
//! directory (standalone mode, `--manifests`) or from the Kubernetes API
//! (herald-k8s's speaker reflectors, with the passwords of the Secrets
//! `BGPPeer`s name). Both give the same [`Manifests`] to the same planner,
//! plugin registry and drivers.
//!
//! Tasks and channels:
//!
//! ```text
//! manifests dir / API ──► reload ──► announce() ──► watch<Arc<View>> ──┬─► bgp::run  (sessions, RIB-out, listeners)
//!                               ▲          ▲                             └─► l2::run   (ARP/NDP owner)
//!              membership ──────┘          └── plugin registry (announcer plugins, synced on reload)
//!              (alive speakers)
//! SIGTERM/SIGINT ──► shutdown ──► drivers withdraw / hand over, then exit
//! ```
//!
//! Changes are noticed from inotify events, debounced, with a slow poll
//! behind them (`changes`): a change reaches the drivers within tens of
//! milliseconds, and within a second wherever events are missing. On the
//! API, from the watchers' events, debounced the same way as the
//! controller's (a burst is one plan).
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
use herald_core::bgp::SecretPasswords;
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
    /// This node's name (its Node object; in a pod, from the downward API:
    /// `spec.nodeName`).
    #[arg(long, env = "HERALD_NODE")]
    node: String,
    /// The manifests directory (standalone mode): Node, Services with
    /// status, EndpointSlices, IPPools, BGPPeers, advertisements. Without
    /// it the speaker reads the cluster of `KUBECONFIG` (else
    /// `~/.kube/config`, or in a pod the in-cluster configuration).
    #[arg(long, env = "HERALD_MANIFESTS")]
    manifests: Option<PathBuf>,
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
    /// The passwords of the Secrets `BGPPeer`s name (`None`: standalone
    /// mode, which cannot read Secrets).
    pub passwords: Option<SecretPasswords>,
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

/// Where the speaker's objects come from.
enum Source {
    /// A manifests directory and its change events.
    Files {
        dir: PathBuf,
        changes: changes::Changes,
    },
    /// The Kubernetes API.
    Cluster(Box<herald_k8s::speaker::SpeakerStores>),
}

/// What one plan is made from.
struct Inputs {
    manifests: Manifests,
    passwords: Option<SecretPasswords>,
}

impl Source {
    /// Starts watching (before the first load, so no change is missed) and
    /// loads the first inputs; a failure is reported (logged, or one line on
    /// stderr for the API's) and gives the exit status.
    async fn start(manifests: Option<&PathBuf>) -> Result<(Source, Inputs), ExitCode> {
        match manifests {
            Some(dir) => {
                let mut source = Source::Files {
                    dir: dir.clone(),
                    changes: changes::Changes::new(dir),
                };
                match source.load() {
                    Ok(first) => Ok((source, first)),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot load the manifests");
                        Err(ExitCode::from(crate::EXIT_INVALID_INPUT))
                    }
                }
            }
            None => {
                let stores = async {
                    let client = herald_k8s::connect().await?;
                    herald_k8s::speaker::SpeakerStores::start(client).await
                };
                match stores.await {
                    Ok(stores) => {
                        stores.ready().await;
                        tracing::info!("stores filled; planning");
                        let mut source = Source::Cluster(Box::new(stores));
                        let first = source.load().map_err(|_| ExitCode::FAILURE)?;
                        Ok((source, first))
                    }
                    Err(e) => {
                        // One line a user can act on, as the controller's.
                        eprintln!("herald speaker: {e}");
                        Err(ExitCode::FAILURE)
                    }
                }
            }
        }
    }

    /// Waits for the next change.
    async fn next(&mut self) {
        match self {
            Source::Files { changes, .. } => changes.next().await,
            Source::Cluster(stores) => stores.next_change().await,
        }
    }

    /// The inputs as they are now.
    fn load(&mut self) -> Result<Inputs, herald_api::load::LoadError> {
        match self {
            Source::Files { dir, .. } => Ok(Inputs {
                manifests: load_paths(&[dir])?,
                passwords: None,
            }),
            Source::Cluster(stores) => {
                let (manifests, passwords) = stores.inputs();
                Ok(Inputs {
                    manifests,
                    passwords: Some(passwords),
                })
            }
        }
    }
}

async fn serve(args: Args) -> ExitCode {
    let config = Config {
        load_balancer_class: args.load_balancer_class.clone(),
    };
    let (mut source, inputs) = match Source::start(args.manifests.as_ref()).await {
        Ok(started) => started,
        Err(code) => return code,
    };
    if !inputs.manifests.nodes.iter().any(|n| n.name == args.node) {
        tracing::warn!(node = %args.node, "no Node object for this node yet: nothing is announced until one appears");
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
        inputs,
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
            () = source.next() => {
                match source.load() {
                    Ok(inputs) => {
                        let view = reload(&args.node, inputs, &config, &mut registry, alive(&mut peers));
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
                let inputs = view_tx.borrow().inputs();
                let view = reload(&args.node, inputs, &config, &mut registry, alive(&mut peers));
                view_tx.send_replace(Arc::new(view));
            }
            Some(()) = membership_changed(&mut peers, planned) => {
                let inputs = view_tx.borrow().inputs();
                let view = reload(&args.node, inputs, &config, &mut registry, alive(&mut peers));
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
    inputs: Inputs,
    config: &Config,
    registry: &mut Registry,
    alive: Option<BTreeSet<String>>,
) -> View {
    tokio::task::block_in_place(|| {
        for e in registry.sync(&inputs.manifests.plugins) {
            tracing::warn!(plugin = %e.name, "{}", e.message);
        }
        plan(node, inputs, config, registry, alive)
    })
}

/// Plans the announcements of `manifests` with the plugins of `registry`
/// and the speakers `alive` from membership; without membership every node
/// in the manifests counts as alive.
fn plan(
    node: &str,
    Inputs {
        manifests,
        passwords,
    }: Inputs,
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
        passwords,
        announcements,
        alive,
    }
}

impl View {
    /// What this view was planned from, to plan again.
    fn inputs(&self) -> Inputs {
        Inputs {
            manifests: self.manifests.clone(),
            passwords: self.passwords.clone(),
        }
    }
}
