//! Watchers and reflector stores for what the controller reads, a change
//! signal, and waiting until the stores show the controller's own writes.
//!
//! Each kind has a kube-runtime watcher feeding a store; the watcher
//! re-lists after a watch ends or expires (410 Gone) and backs off after
//! errors, which are logged one line each ([`crate::error::classify`]).
//! Every applied or deleted object, and every completed (re-)list, sends a
//! change signal; signals coalesce (a channel of one), so a burst is one
//! wake-up.
//!
//! Objects are trimmed before they are stored (`trim`): their
//! `managedFields` and `kubectl apply`'s copy of the whole object in an
//! annotation are never read here, and at 10,000 Services they were most
//! of the controller's memory.

use std::fmt::Debug;
use std::time::Duration;

use futures_util::StreamExt;
use herald_api::plugin::PolicyPlugin;
use herald_api::pool::{IPAllocation, IPPool};
use herald_core::ServiceRef;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::error::classify;
use crate::inputs::Objects;

/// The stores of every kind the controller reads.
#[derive(Clone)]
pub struct Stores {
    services: Store<Service>,
    namespaces: Store<Namespace>,
    pools: Store<IPPool>,
    allocations: Store<IPAllocation>,
    plugins: Store<PolicyPlugin>,
}

/// Coalescing change signals from the watchers.
pub type Changed = mpsc::Receiver<()>;

/// What one round of writes left in the cluster, to be seen in the stores
/// before the next plan ([`Stores::show`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Written {
    /// Records by name: the `resourceVersion` written, or `None` when
    /// deleted.
    pub records: Vec<(String, Option<String>)>,
    /// Services whose status was written, with the `resourceVersion`
    /// the write returned.
    pub services: Vec<(ServiceRef, Option<String>)>,
    /// `IPPool`s whose status was written, likewise.
    pub pools: Vec<(String, Option<String>)>,
    /// `PolicyPlugin`s whose status was written, likewise.
    pub plugins: Vec<(String, Option<String>)>,
}

impl Written {
    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
            && self.services.is_empty()
            && self.pools.is_empty()
            && self.plugins.is_empty()
    }
}

impl Stores {
    /// Starts a watcher per kind, cluster-wide, on tasks of the current
    /// runtime.
    pub fn start(client: &Client) -> (Stores, Changed) {
        let (tx, rx) = mpsc::channel(1);
        let stores = Stores {
            services: reflect(Api::all(client.clone()), "services", &tx),
            namespaces: reflect(Api::all(client.clone()), "namespaces", &tx),
            pools: reflect(Api::all(client.clone()), "ippools.herald.dev", &tx),
            allocations: reflect(Api::all(client.clone()), "ipallocations.herald.dev", &tx),
            plugins: reflect(Api::all(client.clone()), "policyplugins.herald.dev", &tx),
        };
        (stores, rx)
    }

    /// Waits until every store has completed its first list: planning on a
    /// partial view would hand out addresses the records already hold.
    pub async fn ready(&self) {
        // The writers live as long as their tasks, which never end.
        let _ = self.services.wait_until_ready().await;
        let _ = self.namespaces.wait_until_ready().await;
        let _ = self.pools.wait_until_ready().await;
        let _ = self.allocations.wait_until_ready().await;
        let _ = self.plugins.wait_until_ready().await;
    }

    /// The objects the stores hold now, sorted.
    pub fn objects(&self) -> Objects {
        let mut objects = Objects {
            services: self.services.state(),
            namespaces: self.namespaces.state(),
            pools: self.pools.state(),
            allocations: self.allocations.state(),
            plugins: self.plugins.state(),
        };
        objects.sort();
        objects
    }

    /// Whether the stores show `written`: each record at (at least) the
    /// version written or gone when deleted, each Service at (at least) the
    /// version its status write returned, or gone.
    pub fn show(&self, written: &Written) -> bool {
        let records = written.records.iter().all(|(name, version)| {
            let have = self.allocations.get(&ObjectRef::new(name));
            match (version, have) {
                (None, have) => have.is_none(),
                (Some(_), None) => false,
                (Some(v), Some(have)) => at_least(have.resource_version().as_deref(), v),
            }
        });
        records
            && written.services.iter().all(|(id, version)| {
                let have = self
                    .services
                    .get(&ObjectRef::new(&id.name).within(&id.namespace));
                shows(version.as_deref(), have.as_deref())
            })
            && written.pools.iter().all(|(name, version)| {
                shows(
                    version.as_deref(),
                    self.pools.get(&ObjectRef::new(name)).as_deref(),
                )
            })
            && written.plugins.iter().all(|(name, version)| {
                shows(
                    version.as_deref(),
                    self.plugins.get(&ObjectRef::new(name)).as_deref(),
                )
            })
    }

    /// Waits until the stores show `written`, at most `bound` (a write
    /// someone else overwrote in between may never show as such).
    pub async fn wait_for(&self, written: &Written, changed: &mut Changed, bound: Duration) {
        let deadline = tokio::time::Instant::now() + bound;
        while !self.show(written) {
            if tokio::time::timeout_at(deadline, changed.recv())
                .await
                .is_err()
            {
                tracing::debug!("the stores do not show the last writes yet; planning anyway");
                return;
            }
        }
    }
}

/// Whether a store shows a status write that returned `version`: the
/// object at that version or later, or gone.
fn shows<K: Resource>(version: Option<&str>, have: Option<&K>) -> bool {
    match (version, have) {
        (_, None) | (None, _) => true,
        (Some(v), Some(have)) => at_least(have.resource_version().as_deref(), v),
    }
}

/// Whether a store's `resourceVersion` is at least the one written.
/// Versions are opaque to clients, but the API server's are etcd revisions,
/// which grow; when either does not parse, only equality counts.
fn at_least(have: Option<&str>, written: &str) -> bool {
    match (have.map(str::parse::<u64>), written.parse::<u64>()) {
        (Some(Ok(have)), Ok(written)) => have >= written,
        _ => have == Some(written),
    }
}

/// A store fed by a watcher of `api`, sending change signals on `tx`.
pub(crate) fn reflect<K>(api: Api<K>, resource: &'static str, tx: &mpsc::Sender<()>) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    // The watcher runs as long as the process.
    reflect_with(api, watcher::Config::default(), resource, tx).0
}

/// A store fed by a watcher of `api` with `config`, sending change signals
/// on `tx`; aborting the handle ends the watcher.
pub(crate) fn reflect_with<K>(
    api: Api<K>,
    config: watcher::Config,
    resource: &'static str,
    tx: &mpsc::Sender<()>,
) -> (Store<K>, tokio::task::AbortHandle)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let stream =
        reflector::reflector(writer, watcher(api, config).modify(trim::<K>)).default_backoff();
    let tx = tx.clone();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut failing = false;
        while let Some(event) = stream.next().await {
            match event {
                Ok(
                    watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone,
                ) => {
                    if failing {
                        tracing::info!(resource, "watch resumed");
                        failing = false;
                    }
                    // A full channel already holds a signal.
                    let _ = tx.try_send(());
                }
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                Err(e) => {
                    failing = true;
                    tracing::warn!(resource, "{}", describe(resource, e));
                }
            }
        }
    });
    (reader, task.abort_handle())
}

/// The annotation in which `kubectl apply` keeps the whole object it last
/// applied.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what Herald never reads from an object before it is stored: the
/// server-side apply bookkeeping (`managedFields`) and `kubectl apply`'s
/// copy of the object. The writes do not need them: statuses are patched
/// and records replaced whole.
fn trim<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// A watcher's failure as one line.
fn describe(resource: &'static str, e: watcher::Error) -> String {
    match e {
        watcher::Error::InitialListFailed(e) => classify("list", resource, e).to_string(),
        watcher::Error::WatchStartFailed(e) | watcher::Error::WatchFailed(e) => {
            classify("watch", resource, e).to_string()
        }
        watcher::Error::WatchError(status) => {
            classify("watch", resource, kube::Error::Api(status)).to_string()
        }
        other => format!("watch {resource}: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_objects_keep_what_herald_reads_and_lose_the_bookkeeping() {
        let mut svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "web",
                "namespace": "shop",
                "resourceVersion": "7",
                "annotations": {
                    "herald.dev/sharing-key": "k",
                    LAST_APPLIED: "{\"apiVersion\":\"v1\",\"kind\":\"Service\"}",
                },
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
            },
            "spec": {"type": "LoadBalancer"},
        }))
        .unwrap();
        trim(&mut svc);
        assert_eq!(svc.metadata.managed_fields, None);
        let annotations = svc.metadata.annotations.as_ref().unwrap();
        assert_eq!(annotations.len(), 1);
        assert_eq!(annotations["herald.dev/sharing-key"], "k");
        assert_eq!(svc.resource_version().as_deref(), Some("7"));
        assert!(svc.spec.is_some());
    }

    #[test]
    fn versions_compare_as_numbers_when_they_are_numbers() {
        assert!(at_least(Some("100"), "99"));
        assert!(at_least(Some("100"), "100"));
        assert!(!at_least(Some("99"), "100"));
        assert!(!at_least(None, "1"));
        assert!(at_least(Some("abc"), "abc"));
        assert!(!at_least(Some("abd"), "abc"));
    }
}
