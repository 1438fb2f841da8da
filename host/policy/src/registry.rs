//! The plugins a process runs: [`Registry`] loads the `PolicyPlugin`s of a
//! configuration, keeps each running as a [`WasmPlugin`], replaces a
//! plugin in place when its spec changes, and hands the core its
//! [`Policies`]. `herald plan`, `herald plugin` and the speaker all go
//! through it, so a plugin is loaded, refused and reported the same way
//! everywhere.
//!
//! Bringing the registry to a new list of specs ([`Registry::sync`]):
//!
//! | the spec | what happens |
//! |---|---|
//! | new | loaded (all checks of [`Host::load`]); on failure not registered, and the error is reported |
//! | unchanged, running | nothing: not read, not loaded again |
//! | changed | the new version is loaded and swapped in ([`WasmPlugin::replace`]): the next decision uses it; on failure the old version keeps running and the error says so |
//! | gone | dropped |
//!
//! A version that failed is tried again at every sync, and reported until
//! it loads: a failure may be passing (a file not yet copied, a first call
//! that ran out of time on a loaded machine), and the compile cache makes a
//! retry of a component that compiled cheap. [`Registry::has_failures`]
//! tells a caller to sync again later.

use std::collections::BTreeMap;

use herald_core::ConfigError;
use herald_core::plugin::{PolicyPluginSpec, World};
use herald_core::policy::{AllocatorPolicy, AnnouncerPolicy, Plugin, Policies};

use crate::host::read_source;
use crate::{Error, Host, WasmPlugin};

/// The loaded plugins of a process, by `PolicyPlugin` name.
#[derive(Default)]
pub struct Registry {
    /// Created on the first plugin: a process without plugins never starts
    /// an engine or its epoch thread.
    host: Option<Host>,
    plugins: BTreeMap<String, Entry>,
}

/// One `PolicyPlugin` of the registry.
struct Entry {
    /// The spec the running version was loaded from.
    running_spec: Option<PolicyPluginSpec>,
    running: Option<WasmPlugin>,
    /// Why the wanted version does not run; cleared by a successful load.
    error: Option<String>,
}

/// What the registry knows of one plugin, for logs and status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginStatus {
    /// The `PolicyPlugin`'s name.
    pub name: String,
    /// The world of the running version (`None`: none runs).
    pub world: Option<World>,
    /// The digest of the running version, 64 hex digits.
    pub digest: Option<String>,
    /// Why the wanted version is not running, if it is not.
    pub error: Option<String>,
}

impl Registry {
    /// An empty registry; the engine is created with the first plugin.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// An empty registry that loads with `host` (shares its engine and
    /// compile cache).
    pub fn with_host(host: Host) -> Registry {
        Registry {
            host: Some(host),
            plugins: BTreeMap::new(),
        }
    }

    /// Brings the registry to `specs` (name, spec), as the module docs
    /// say, and returns every plugin that does not run the version its
    /// spec asks for, as errors of kind `PolicyPlugin`.
    pub fn sync(&mut self, specs: &[(String, PolicyPluginSpec)]) -> Vec<ConfigError> {
        self.plugins
            .retain(|name, _| specs.iter().any(|(n, _)| n == name));
        let mut errors = Vec::new();
        for (name, spec) in specs {
            if let Some(message) = self.sync_one(name, spec) {
                errors.push(ConfigError {
                    kind: "PolicyPlugin".to_owned(),
                    name: name.clone(),
                    message,
                });
            }
        }
        errors
    }

    /// Brings one plugin to `spec`; the error, if it does not run it.
    fn sync_one(&mut self, name: &str, spec: &PolicyPluginSpec) -> Option<String> {
        let entry = self.plugins.entry(name.to_owned()).or_insert(Entry {
            running_spec: None,
            running: None,
            error: None,
        });
        if entry.running_spec.as_ref() == Some(spec) {
            entry.error = None;
            return None;
        }
        let host = match &self.host {
            Some(h) => h.clone(),
            None => match Host::new() {
                Ok(h) => self.host.insert(h).clone(),
                Err(e) => return Some(e.to_string()),
            },
        };
        let result = read_source(name, spec).and_then(|bytes| match &entry.running {
            Some(running) => running.replace(&host, spec, &bytes),
            None => host
                .load(name, spec, &bytes)
                .map(|l| entry.running = Some(WasmPlugin::new(l))),
        });
        match result {
            Ok(()) => {
                entry.running_spec = Some(spec.clone());
                entry.error = None;
                None
            }
            Err(e) => {
                let message = refusal(&e, entry.running.as_ref());
                entry.error = Some(message.clone());
                Some(message)
            }
        }
    }

    /// The running plugins as the core takes them, each with the failure
    /// policy of its running version.
    pub fn policies(&self) -> Policies<'_> {
        let mut policies = Policies::default();
        for (name, entry) in &self.plugins {
            let Some(plugin) = &entry.running else {
                continue;
            };
            let current = plugin.current();
            let failure_policy = current.failure_policy();
            match current.world() {
                World::Allocator => {
                    policies.allocators.insert(
                        name.clone(),
                        Plugin {
                            policy: plugin as &dyn AllocatorPolicy,
                            failure_policy,
                        },
                    );
                }
                World::Announcer => {
                    policies.announcers.insert(
                        name.clone(),
                        Plugin {
                            policy: plugin as &dyn AnnouncerPolicy,
                            failure_policy,
                        },
                    );
                }
                // Pod setup is the CNI plugin's, not the planner's.
                World::CniChain => {}
            }
        }
        policies
    }

    /// Whether some plugin does not run the version its spec asks for (a
    /// later [`Registry::sync`] tries it again).
    pub fn has_failures(&self) -> bool {
        self.plugins.values().any(|e| e.error.is_some())
    }

    /// The running plugin `name`, if one runs.
    pub fn get(&self, name: &str) -> Option<&WasmPlugin> {
        self.plugins.get(name)?.running.as_ref()
    }

    /// Every plugin's status, by name.
    pub fn status(&self) -> Vec<PluginStatus> {
        self.plugins
            .iter()
            .map(|(name, entry)| {
                let current = entry.running.as_ref().map(WasmPlugin::current);
                PluginStatus {
                    name: name.clone(),
                    world: current.as_ref().map(|c| c.world()),
                    digest: current.as_ref().map(|c| c.digest()),
                    error: entry.error.clone(),
                }
            })
            .collect()
    }
}

/// The report of a version that failed to load: the error, and which
/// version keeps running instead, if any.
fn refusal(e: &Error, running: Option<&WasmPlugin>) -> String {
    match running {
        Some(p) => {
            let current = p.current();
            format!("{e}; version {} keeps running", short(&current.digest()))
        }
        None => format!("{e}; not loaded"),
    }
}

/// The first 12 hex digits of a digest, enough to tell versions apart in a
/// message.
fn short(hex: &str) -> &str {
    hex.get(..12).unwrap_or(hex)
}
