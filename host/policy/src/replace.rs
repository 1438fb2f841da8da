//! [`WasmPlugin`]: a plugin replaced while running (hot replacement),
//! and the core's policy traits implemented by its current version.

use std::sync::{Arc, RwLock};

use herald_core::cni::{Action, CniPolicy, Pod};
use herald_core::plugin::PolicyPluginSpec;
use herald_core::policy::{
    AllocatorPolicy, AnnounceQuery, AnnouncerPolicy, NodeChoice, PolicyError, PoolView,
};
use herald_core::service::Service;

use crate::error::Result;
use crate::host::Host;
use crate::plugin::{Loaded, span};

/// A plugin that can be replaced while running: each decision uses the
/// version current when it starts; a new version takes effect on the next
/// decision; a version that fails to load leaves the old one running.
pub struct WasmPlugin {
    current: RwLock<Arc<Loaded>>,
}

impl WasmPlugin {
    /// A plugin running `loaded`.
    pub fn new(loaded: Loaded) -> WasmPlugin {
        WasmPlugin {
            current: RwLock::new(Arc::new(loaded)),
        }
    }

    /// The version in use.
    pub fn current(&self) -> Arc<Loaded> {
        // A panic while swapping an `Arc` cannot leave it half-written.
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Loads a new version and, if it loads, makes it current. On failure
    /// the old version keeps running and the error says why.
    pub fn replace(&self, host: &Host, spec: &PolicyPluginSpec, bytes: &[u8]) -> Result<()> {
        let old = self.current();
        let loaded = host.load(old.name(), spec, bytes);
        // Entered after loading: the load's own events have their span.
        let _span = span(old.name(), old.world()).entered();
        match loaded {
            Ok(new) => {
                tracing::info!(
                    from = %old.digest(),
                    to = %new.digest(),
                    "policy plugin replaced"
                );
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
                Ok(())
            }
            Err(e) => {
                tracing::warn!(
                    running = %old.digest(),
                    error = %e,
                    "new version of policy plugin refused; the old one keeps running"
                );
                Err(e)
            }
        }
    }
}

impl AllocatorPolicy for WasmPlugin {
    fn choose(
        &self,
        service: &Service,
        pool: &dyn PoolView,
    ) -> Result<Option<std::net::IpAddr>, PolicyError> {
        self.current().choose(service, pool)
    }
}

impl AnnouncerPolicy for WasmPlugin {
    fn announce(&self, query: &AnnounceQuery<'_>) -> Result<Vec<NodeChoice>, PolicyError> {
        self.current().announce(query)
    }
}

impl CniPolicy for WasmPlugin {
    fn setup(&self, pod: &Pod) -> Result<Vec<Action>, PolicyError> {
        self.current().setup(pod)
    }
}
