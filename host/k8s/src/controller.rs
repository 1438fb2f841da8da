//! The controller's loop (DESIGN.md §1, issue 10):
//!
//! ```text
//! watchers ──► stores ──change──► debounce ──► Inputs ──► core: Allocator ──► Plan
//!                ▲                                ▲                             │
//!                │                 plugin Registry┘          diff::changes ◄────┤
//!                │                                          status::changes ◄───┘
//!                └──── wait until shown ◄──── write (records, statuses, releases;
//!                                             then pool and plugin statuses)
//!                                               └──► Events (a task of their own)
//! ```
//!
//! - Before anything, a preflight lists each kind once and asks the API
//!   server (SelfSubjectAccessReview) whether every verb the controller
//!   needs is allowed, so a broken kubeconfig, missing CRDs or a missing
//!   RBAC rule is one line naming the fix, not a stream of retries.
//! - Nothing is planned until every store has its first list: the
//!   `IPAllocation` records are the memory that keeps addresses where they
//!   are across restarts.
//! - After writing, the next plan waits (boundedly) until the stores show
//!   those writes, so the controller never plans on a view older than its
//!   own last act.
//! - A record someone else created first (409) means the address is taken:
//!   the stores soon show it and the next plan goes around it.
//! - Failed writes are retried with a growing delay, up to
//!   30 s; plugins that failed to load are retried every 10 s (as in the
//!   speaker).
//! - Events go to a task of their own ([`crate::events`]): recording them
//!   never holds up a write, and a failure to record is logged once.
//!
//! Planning runs in `block_in_place`: loading a plugin compiles it and
//! plugin calls block (herald-policy's crate docs).
//!
//! ## Replicas
//!
//! Any number of replicas may run; the holder of a Lease acts
//! ([`crate::lease`]). Every replica fills its stores from the start, so a
//! standby that takes over plans at once. The planning and writing runs as
//! a task of its own per term: when the lease is lost that task is aborted
//! before anything else, and a plan finished after the loss is not written.
//! A new term starts by catching up: a quorum list of the records and
//! Services (metadata only), waited for in the stores like the controller's
//! own writes, so it does not plan on a view older than its predecessor's
//! last writes.
//!
//! Two leaders may still overlap briefly: a leader whose renewal is late
//! may have a write in flight when its successor starts. That cannot give
//! one address to two Services, because an address is shown only after its
//! record is created, and creating a record is the lock: the API server
//! creates a name once, so of two leaders that chose one address for two
//! Services, one gets 409 AlreadyExists, writes no status for it and plans
//! again from stores that show the other's record. A record is replaced
//! only at the `resourceVersion` its writer read (409 Conflict otherwise),
//! and deleted only under its `uid`, so neither can take a record the other
//! just wrote. What an overlap can cost is churn, never a duplicate: a round
//! that stops early on a conflict and, at worst, a Service whose first
//! address was being written during the overlap itself shown another one.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use herald_core::{Allocator, Config, ConfigError, Plan, ServiceRef};
use herald_policy::Registry;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::diff;
use crate::error::{Error, Result, classify};
use crate::events::Events;
use crate::inputs::Inputs;
use crate::lease::{LEASES, Leadership, LeaseSettings};
use crate::reflect::{Changed, Stores, Written};
use crate::status;
use crate::write::{WriteError, write, write_statuses};
use herald_api::plugin::PolicyPlugin;
use herald_api::pool::{IPAllocation, IPPool};

/// How long a burst of changes may go on before the controller plans: a
/// `kubectl apply` of many objects is one plan, not one per object.
const QUIET: Duration = Duration::from_millis(20);
/// The longest a plan waits for a burst to end.
const BURST_BOUND: Duration = Duration::from_millis(200);
/// How long the next plan waits for the stores to show the last writes.
const SHOW_BOUND: Duration = Duration::from_secs(2);
/// The first delay before writes that failed are tried again; it doubles
/// up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// The longest delay between attempts of failing writes.
const MAX_RETRY: Duration = Duration::from_secs(30);
/// The longest wait for the stores to show a record someone else wrote
/// before planning again.
const TAKEN_RETRY: Duration = Duration::from_secs(1);
/// How often plugins that failed to load are tried again while nothing
/// changes (as in the speaker).
const PLUGIN_RETRY: Duration = Duration::from_secs(10);

/// What the controller is told.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The loadBalancerClass Herald serves.
    pub load_balancer_class: String,
    /// The Lease replicas hold to act.
    pub lease: LeaseSettings,
}

/// A client from the kubeconfig (`KUBECONFIG`, else `~/.kube/config`) or,
/// in a pod, the in-cluster configuration (kube's `Config::infer`).
pub async fn connect() -> Result<Client> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| Error::Config(e.to_string()))?;
    Client::try_from(config).map_err(|e| Error::Config(e.to_string()))
}

/// Checks access, then stands by or, while leading, plans and writes on
/// every change, until `shutdown` completes; then stops writing and
/// releases the Lease. Returns early only on a preflight failure.
pub async fn run(
    client: Client,
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    preflight(&client, &settings.lease).await?;
    let events = Events::start(&client);
    let (stores, changed) = Stores::start(&client);
    let mut leadership = Leadership::start(&client, settings.lease);
    let config = Config {
        load_balancer_class: settings.load_balancer_class,
    };
    let changed = Arc::new(tokio::sync::Mutex::new(changed));
    tokio::pin!(shutdown);
    tokio::select! {
        _ = stores.ready() => tracing::info!("stores filled"),
        _ = &mut shutdown => {
            leadership.release().await;
            return Ok(());
        }
    }
    loop {
        tokio::select! {
            _ = leadership.until_leading() => {}
            _ = &mut shutdown => break,
        }
        let term = tokio::spawn(act(
            client.clone(),
            stores.clone(),
            events.clone(),
            Arc::clone(&changed),
            config.clone(),
            leadership.leading(),
        ));
        let abort = term.abort_handle();
        tokio::pin!(term);
        let stopping = tokio::select! {
            _ = leadership.until_lost() => false,
            _ = &mut shutdown => true,
            ended = &mut term => match ended {
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                _ => unreachable!("a term ends only when aborted"),
            },
        };
        // Before anything else: no write may follow.
        abort.abort();
        let _ = term.await;
        if stopping {
            break;
        }
        tracing::warn!("lost the lease: stopped writing");
    }
    leadership.release().await;
    Ok(())
}

/// One term as leader: catches up with the cluster, then plans and writes
/// on every change. Never returns; aborted when the term ends.
async fn act(
    client: Client,
    stores: Stores,
    events: Events,
    changed: Arc<tokio::sync::Mutex<Changed>>,
    config: Config,
    leading: watch::Receiver<bool>,
) {
    let mut changed = changed.lock().await;
    let changed = &mut *changed;
    let mut registry = Registry::new();
    let mut reported = BTreeSet::new();
    // What the cluster holds now, to be seen in the stores before the
    // first plan: the previous leader's last writes included.
    let mut written = match current(&client).await {
        Ok(current) => current,
        Err(e) => {
            tracing::warn!("catching up: {e}; planning on the stores as they are");
            Written::default()
        }
    };
    let mut retry = FIRST_RETRY;
    tracing::info!("planning");
    loop {
        if !written.is_empty() {
            stores.wait_for(&written, changed, SHOW_BOUND).await;
        }
        let objects = stores.objects();
        let inputs = Inputs::of(&objects);
        let plan = tokio::task::block_in_place(|| plan(&inputs, &config, &mut registry));
        report(&plan.errors, &mut reported);
        let now = Time(Timestamp::now());
        let changes = diff::changes(&plan, &objects, &now);
        let statuses = status::changes(&plan, &registry.status(), &objects, &now);
        let mut wake = registry.has_failures().then_some(PLUGIN_RETRY);
        written = Written::default();
        if !*leading.borrow() {
            // Planned while the lease was lost: wait to be aborted.
            std::future::pending::<()>().await;
        }
        let mut settled = true;
        if !changes.is_empty() {
            tracing::info!(
                create = changes.create.len(),
                replace = changes.replace.len(),
                statuses = changes.statuses.len(),
                delete = changes.delete.len(),
                "writing the difference"
            );
            let (done, result) = write(&client, &changes, &events).await;
            written = done;
            settled = result.is_ok();
            match result {
                Ok(()) => retry = FIRST_RETRY,
                // The stores show the record that was in the way within
                // moments (its watch event): plan again then, not at once.
                Err(WriteError::Taken { name }) => {
                    tracing::info!(record = name, "taken meanwhile; planning again");
                    wake = Some(TAKEN_RETRY);
                }
                Err(WriteError::Failed(e)) => {
                    tracing::warn!(retry_in = ?retry, "{e}");
                    wake = Some(retry);
                    retry = (retry * 2).min(MAX_RETRY);
                }
            }
        }
        // Pool and plugin statuses describe the plan: written once the
        // cluster holds it.
        if settled
            && !statuses.is_empty()
            && let Err(e) = write_statuses(&client, &statuses, &mut written).await
        {
            tracing::warn!(retry_in = ?retry, "{e}");
            wake = Some(retry);
            retry = (retry * 2).min(MAX_RETRY);
        }
        next_change(changed, wake).await;
    }
}

/// The records and Services in the cluster now (a quorum read, metadata
/// only), as versions the stores must reach.
async fn current(client: &Client) -> Result<Written> {
    let params = ListParams::default();
    let records = Api::<IPAllocation>::all(client.clone())
        .list_metadata(&params)
        .await
        .map_err(|e| classify("list", "ipallocations.herald.dev", e))?;
    let services = Api::<Service>::all(client.clone())
        .list_metadata(&params)
        .await
        .map_err(|e| classify("list", "services", e))?;
    Ok(Written {
        records: records
            .items
            .into_iter()
            .map(|r| (r.name_any(), r.resource_version()))
            .collect(),
        services: services
            .items
            .into_iter()
            .map(|s| {
                let id = ServiceRef::new(s.namespace().unwrap_or_default(), s.name_any());
                (id, s.resource_version())
            })
            .collect(),
        // Pool and plugin statuses only describe the plan: a stale one is
        // rewritten, never a cause of a wrong allocation.
        ..Written::default()
    })
}

/// Plans with the plugins of the inputs; plugin and object errors go with
/// the plan's own.
fn plan(inputs: &Inputs, config: &Config, registry: &mut Registry) -> Plan {
    let plugin_errors = registry.sync(&inputs.plugins);
    let policies = registry.policies();
    let mut plan = Allocator::new(&inputs.snapshot, config, &policies).into_plan();
    plan.errors.extend(plugin_errors);
    plan.errors.extend(inputs.errors.iter().cloned());
    plan.errors.sort();
    plan
}

/// Logs errors that are new since the last plan, and those that are gone.
fn report(errors: &[ConfigError], reported: &mut BTreeSet<ConfigError>) {
    let now: BTreeSet<ConfigError> = errors.iter().cloned().collect();
    for e in now.difference(reported) {
        tracing::warn!(kind = e.kind, name = e.name, "ignored: {}", e.message);
    }
    for e in reported.difference(&now) {
        tracing::info!(kind = e.kind, name = e.name, "no longer ignored");
    }
    *reported = now;
}

/// Waits for a change (or `wake`), then for the burst to end.
pub(crate) async fn next_change(changed: &mut Changed, wake: Option<Duration>) {
    match wake {
        Some(after) => {
            let _ = tokio::time::timeout(after, changed.recv()).await;
        }
        None => {
            if changed.recv().await.is_none() {
                // The watchers never end; should they, do not spin.
                std::future::pending::<()>().await;
            }
        }
    }
    let bound = tokio::time::Instant::now() + BURST_BOUND;
    loop {
        let quiet = (tokio::time::Instant::now() + QUIET).min(bound);
        match tokio::time::timeout_at(quiet, changed.recv()).await {
            Ok(Some(())) if tokio::time::Instant::now() < bound => {}
            _ => return,
        }
    }
}

/// Lists every kind once, checks each verb the controller needs, and that
/// the Lease's namespace exists.
async fn preflight(client: &Client, lease: &LeaseSettings) -> Result<()> {
    probe::<Service>(client, "services").await?;
    probe::<Namespace>(client, "namespaces").await?;
    probe::<IPPool>(client, "ippools.herald.dev").await?;
    probe::<IPAllocation>(client, "ipallocations.herald.dev").await?;
    probe::<PolicyPlugin>(client, "policyplugins.herald.dev").await?;
    let cluster = [
        ("watch", "", "services", ""),
        ("watch", "", "namespaces", ""),
        ("watch", "herald.dev", "ippools", ""),
        ("watch", "herald.dev", "ipallocations", ""),
        ("watch", "herald.dev", "policyplugins", ""),
        ("get", "herald.dev", "ipallocations", ""),
        ("create", "herald.dev", "ipallocations", ""),
        ("update", "herald.dev", "ipallocations", ""),
        ("delete", "herald.dev", "ipallocations", ""),
        ("patch", "", "services", "status"),
        ("patch", "herald.dev", "ippools", "status"),
        ("patch", "herald.dev", "policyplugins", "status"),
        // kube-runtime's event recorder: a new Event, or a count on it.
        ("create", "events.k8s.io", "events", ""),
        ("patch", "events.k8s.io", "events", ""),
    ];
    // What kube-lease-manager and the Lease's watch do, in its namespace.
    let leases = ["get", "list", "watch", "create", "patch"]
        .map(|verb| (verb, "coordination.k8s.io", "leases", ""));
    let needed = cluster.iter().map(|check| (check, None)).chain(
        leases
            .iter()
            .map(|check| (check, Some(lease.namespace.as_str()))),
    );
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    for (&(verb, group, resource, subresource), namespace) in needed {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.to_owned()),
                    group: Some(group.to_owned()),
                    resource: Some(resource.to_owned()),
                    subresource: (!subresource.is_empty()).then(|| subresource.to_owned()),
                    namespace: namespace.map(str::to_owned),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let name = match (group, subresource, namespace) {
            (_, _, Some(namespace)) => format!("{resource}.{group} in namespace {namespace}"),
            ("", "", None) => resource.to_owned(),
            ("", sub, None) => format!("{resource}/{sub}"),
            (group, "", None) => format!("{resource}.{group}"),
            (group, sub, None) => format!("{resource}.{group}/{sub}"),
        };
        let answer = reviews
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| classify("create", "selfsubjectaccessreviews", e))?;
        if !answer.status.is_some_and(|s| s.allowed) {
            return Err(Error::Forbidden {
                verb,
                resource: name,
                message: "denied by RBAC".to_owned(),
            });
        }
    }
    let namespaces = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default().fields(&format!("metadata.name={}", lease.namespace)))
        .await
        .map_err(|e| classify("list", "namespaces", e))?;
    if namespaces.items.is_empty() {
        return Err(Error::LeaseNamespaceMissing {
            namespace: lease.namespace.clone(),
        });
    }
    Api::<Lease>::namespaced(client.clone(), &lease.namespace)
        .get_opt(&lease.name)
        .await
        .map(drop)
        .map_err(|e| classify("get", LEASES, e))
}

/// Lists one object of a kind, cluster-wide.
pub(crate) async fn probe<K>(client: &Client, resource: &'static str) -> Result<()>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    Api::<K>::all(client.clone())
        .list(&ListParams::default().limit(1))
        .await
        .map(drop)
        .map_err(|e| classify("list", resource, e))
}
