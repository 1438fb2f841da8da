//! The speaker's side of the API: reflectors for everything `herald
//! speaker` reads — Services, EndpointSlices, Nodes, `BGPPeer`s,
//! `BGPAdvertisement`s, `L2Advertisement`s, `IPPool`s, `PolicyPlugin`s,
//! `BFDProfile`s —
//! cluster-wide, and the Secrets that `BGPPeer`s name in `passwordSecret`,
//! each watched by name in its namespace (a list and watch with the field
//! selector `metadata.name`, which RBAC grants by `resourceNames`; never a
//! list of all Secrets). Watchers of Secrets no peer names any more are
//! stopped.
//!
//! [`SpeakerStores::inputs`] builds the same [`Manifests`] the standalone
//! speaker loads from files, through `herald_api::inputs` (so both read
//! objects alike), and the passwords of the named Secrets.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures_util::FutureExt;
use herald_api::bfd::BFDProfile;
use herald_api::bgp::{BGPAdvertisement, BGPPeer};
use herald_api::inputs::{
    add_bfd_profile, add_bgp_advertisement, add_bgp_peer, add_l2_advertisement, add_node, add_pool,
    add_secret_password, add_service, check_bfd_profiles, plugin,
};
use herald_api::l2::L2Advertisement;
use herald_api::load::Manifests;
use herald_api::node::add_endpoint_slice;
use herald_api::plugin::PolicyPlugin;
use herald_api::pool::IPPool;
use herald_core::bgp::{Password, SecretPasswords};
use k8s_openapi::api::core::v1::{Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tokio::sync::mpsc;

use crate::controller::{next_change, probe};
use crate::error::Result;
use crate::reflect::{Changed, reflect, reflect_with};

/// A Secret's watcher, stopped when dropped.
struct Watched {
    store: Store<Secret>,
    task: tokio::task::AbortHandle,
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The stores of every kind the speaker reads, and the change signal.
pub struct SpeakerStores {
    client: Client,
    tx: mpsc::Sender<()>,
    changed: Changed,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    nodes: Store<Node>,
    peers: Store<BGPPeer>,
    bgp: Store<BGPAdvertisement>,
    l2: Store<L2Advertisement>,
    pools: Store<IPPool>,
    plugins: Store<PolicyPlugin>,
    bfd: Store<BFDProfile>,
    /// By namespace and name.
    secrets: BTreeMap<(String, String), Watched>,
}

impl SpeakerStores {
    /// Lists every kind once (a missing CRD or permission is one line
    /// naming the fix), then starts a watcher per kind on tasks of the
    /// current runtime.
    pub async fn start(client: Client) -> Result<SpeakerStores> {
        probe::<Service>(&client, "services").await?;
        probe::<EndpointSlice>(&client, "endpointslices.discovery.k8s.io").await?;
        probe::<Node>(&client, "nodes").await?;
        probe::<BGPPeer>(&client, "bgppeers.herald.dev").await?;
        probe::<BGPAdvertisement>(&client, "bgpadvertisements.herald.dev").await?;
        probe::<L2Advertisement>(&client, "l2advertisements.herald.dev").await?;
        probe::<IPPool>(&client, "ippools.herald.dev").await?;
        probe::<PolicyPlugin>(&client, "policyplugins.herald.dev").await?;
        probe::<BFDProfile>(&client, "bfdprofiles.herald.dev").await?;
        let (tx, changed) = mpsc::channel(1);
        let all = || client.clone();
        Ok(SpeakerStores {
            services: reflect(Api::all(all()), "services", &tx),
            slices: reflect(Api::all(all()), "endpointslices.discovery.k8s.io", &tx),
            nodes: reflect(Api::all(all()), "nodes", &tx),
            peers: reflect(Api::all(all()), "bgppeers.herald.dev", &tx),
            bgp: reflect(Api::all(all()), "bgpadvertisements.herald.dev", &tx),
            l2: reflect(Api::all(all()), "l2advertisements.herald.dev", &tx),
            pools: reflect(Api::all(all()), "ippools.herald.dev", &tx),
            plugins: reflect(Api::all(all()), "policyplugins.herald.dev", &tx),
            bfd: reflect(Api::all(all()), "bfdprofiles.herald.dev", &tx),
            secrets: BTreeMap::new(),
            client,
            tx,
            changed,
        })
    }

    /// Waits until every cluster-wide store has completed its first list:
    /// a speaker planning on a partial view would withdraw routes it
    /// should keep.
    pub async fn ready(&self) {
        // The writers live as long as their tasks, which never end.
        let _ = self.services.wait_until_ready().await;
        let _ = self.slices.wait_until_ready().await;
        let _ = self.nodes.wait_until_ready().await;
        let _ = self.peers.wait_until_ready().await;
        let _ = self.bgp.wait_until_ready().await;
        let _ = self.l2.wait_until_ready().await;
        let _ = self.pools.wait_until_ready().await;
        let _ = self.plugins.wait_until_ready().await;
        let _ = self.bfd.wait_until_ready().await;
    }

    /// Waits for a change in any store, then for the burst to end (a
    /// `kubectl apply` of many objects is one plan).
    pub async fn next_change(&mut self) {
        next_change(&mut self.changed, None).await;
    }

    /// What the stores hold now, as the standalone speaker's manifests,
    /// and the passwords of the Secrets the `BGPPeer`s name. Starts
    /// watchers for newly named Secrets (their first list is a change) and
    /// stops those of Secrets no peer names; a Secret not listed yet has no
    /// entry ("not read yet").
    pub fn inputs(&mut self) -> (Manifests, SecretPasswords) {
        let mut m = Manifests::default();
        for svc in sorted(&self.services) {
            if let Err(e) = add_service(&mut m.snapshot, &svc) {
                m.errors.push(e.into());
            }
        }
        for pool in sorted(&self.pools) {
            add_pool(&mut m.snapshot, &pool);
        }
        for node in sorted(&self.nodes) {
            if let Err(e) = add_node(&mut m.nodes, &node) {
                m.errors.push(e);
            }
        }
        for slice in sorted(&self.slices) {
            add_endpoint_slice(&slice, &mut m.endpoints);
        }
        for peer in sorted(&self.peers) {
            if let Err(e) = add_bgp_peer(&mut m.bgp_peers, &peer) {
                m.errors.push(e);
            }
        }
        for profile in sorted(&self.bfd) {
            if let Err(e) = add_bfd_profile(&mut m.bfd_profiles, &profile) {
                m.errors.push(e);
            }
        }
        check_bfd_profiles(&mut m.bgp_peers, &m.bfd_profiles, &mut m.errors);
        for adv in sorted(&self.bgp) {
            if let Err(e) = add_bgp_advertisement(&mut m.bgp_advertisements, &adv) {
                m.errors.push(e);
            }
        }
        for adv in sorted(&self.l2) {
            if let Err(e) = add_l2_advertisement(&mut m.l2_advertisements, &adv) {
                m.errors.push(e);
            }
        }
        for p in sorted(&self.plugins) {
            match plugin(&p) {
                Ok(entry) => m.plugins.push(entry),
                Err(e) => m.errors.push(e),
            }
        }
        let named: BTreeSet<_> = m
            .bgp_peers
            .iter()
            .filter_map(|p| match &p.password {
                Some(Password::Secret(s)) => Some(s.clone()),
                _ => None,
            })
            .collect();
        self.watch_secrets(
            named
                .iter()
                .map(|s| (s.namespace.clone(), s.name.clone()))
                .collect(),
        );
        let mut passwords = SecretPasswords::default();
        for reference in &named {
            let key = (reference.namespace.clone(), reference.name.clone());
            let Some(watched) = self.secrets.get(&key) else {
                continue;
            };
            // Not listed yet: no entry, rather than "not found".
            if watched.store.wait_until_ready().now_or_never().is_none() {
                continue;
            }
            let secret = watched
                .store
                .get(&ObjectRef::new(&reference.name).within(&reference.namespace));
            add_secret_password(&mut passwords, reference, secret.as_deref());
        }
        (m, passwords)
    }

    /// Watches exactly the Secrets in `wanted` (namespace, name).
    fn watch_secrets(&mut self, wanted: BTreeSet<(String, String)>) {
        self.secrets.retain(|key, _| {
            let keep = wanted.contains(key);
            if !keep {
                tracing::info!(namespace = %key.0, name = %key.1, "no BGPPeer names this Secret any more: no longer watched");
            }
            keep
        });
        for (namespace, name) in wanted {
            if self
                .secrets
                .contains_key(&(namespace.clone(), name.clone()))
            {
                continue;
            }
            tracing::info!(%namespace, %name, "watching the Secret a BGPPeer names");
            let api: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
            let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
            let (store, task) = reflect_with(api, config, "secrets", &self.tx);
            self.secrets
                .insert((namespace, name), Watched { store, task });
        }
    }
}

/// A store's objects in namespace and name order: stores hand them out in
/// none, and plans and logs read better in one.
fn sorted<K>(store: &Store<K>) -> Vec<Arc<K>>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    let mut all = store.state();
    all.sort_by_key(|k| (k.namespace().unwrap_or_default(), k.name_any()));
    all
}
