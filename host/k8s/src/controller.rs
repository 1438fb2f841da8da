//! The controller's loop (DESIGN.md §1, issue 10):
//!
//! ```text
//! watchers ──► stores ──change──► debounce ──► Inputs ──► core: Allocator ──► Plan
//!                ▲                                ▲                             │
//!                │                 plugin Registry┘          diff::changes ◄────┘
//!                └──── wait until shown ◄──── write (records, statuses, releases)
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
//!
//! Planning runs in `block_in_place`: loading a plugin compiles it and
//! plugin calls block (herald-policy's crate docs). One replica only: there
//! is no leader election yet.

use std::collections::BTreeSet;
use std::time::Duration;

use herald_core::{Allocator, Config, ConfigError, Plan};
use herald_policy::Registry;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde::de::DeserializeOwned;

use crate::diff;
use crate::error::{Error, Result, classify};
use crate::inputs::Inputs;
use crate::reflect::{Changed, Stores, Written};
use crate::write::{WriteError, write};
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
}

/// A client from the kubeconfig (`KUBECONFIG`, else `~/.kube/config`) or,
/// in a pod, the in-cluster configuration (kube's `Config::infer`).
pub async fn connect() -> Result<Client> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| Error::Config(e.to_string()))?;
    Client::try_from(config).map_err(|e| Error::Config(e.to_string()))
}

/// Checks access, then plans and writes on every change, until the task is
/// dropped. Returns only on a preflight failure.
pub async fn run(client: Client, settings: Settings) -> Result<()> {
    preflight(&client).await?;
    let (stores, mut changed) = Stores::start(&client);
    stores.ready().await;
    tracing::info!("stores filled; planning");
    let config = Config {
        load_balancer_class: settings.load_balancer_class,
    };
    let mut registry = Registry::new();
    let mut reported = BTreeSet::new();
    let mut written = Written::default();
    let mut retry = FIRST_RETRY;
    loop {
        if !written.is_empty() {
            stores.wait_for(&written, &mut changed, SHOW_BOUND).await;
        }
        let objects = stores.objects();
        let inputs = Inputs::of(&objects);
        let plan = tokio::task::block_in_place(|| plan(&inputs, &config, &mut registry));
        report(&plan.errors, &mut reported);
        let changes = diff::changes(&plan, &objects, &Time(Timestamp::now()));
        let mut wake = registry.has_failures().then_some(PLUGIN_RETRY);
        written = Written::default();
        if !changes.is_empty() {
            tracing::info!(
                create = changes.create.len(),
                replace = changes.replace.len(),
                statuses = changes.statuses.len(),
                delete = changes.delete.len(),
                "writing the difference"
            );
            let (done, result) = write(&client, &changes).await;
            written = done;
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
        next_change(&mut changed, wake).await;
    }
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

/// Lists every kind once, then checks each verb the controller needs.
async fn preflight(client: &Client) -> Result<()> {
    probe::<Service>(client, "services").await?;
    probe::<Namespace>(client, "namespaces").await?;
    probe::<IPPool>(client, "ippools.herald.dev").await?;
    probe::<IPAllocation>(client, "ipallocations.herald.dev").await?;
    probe::<PolicyPlugin>(client, "policyplugins.herald.dev").await?;
    let needed = [
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
    ];
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    for (verb, group, resource, subresource) in needed {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.to_owned()),
                    group: Some(group.to_owned()),
                    resource: Some(resource.to_owned()),
                    subresource: (!subresource.is_empty()).then(|| subresource.to_owned()),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let name = match (group, subresource) {
            ("", "") => resource.to_owned(),
            ("", sub) => format!("{resource}/{sub}"),
            (group, _) => format!("{resource}.{group}"),
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
    Ok(())
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
