//! A loaded plugin: its pre-linked component, its limits, one fresh
//! `Store` per call; the core's policy traits implemented by calling it;
//! and [`WasmPlugin`], which swaps in a new version while running.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use herald_core::cni::{Action, CniPolicy, Pod, validate_actions};
use herald_core::plugin::{FailurePolicy, PolicyPluginSpec, World, sha256_hex};
use herald_core::policy::{
    AllocatorPolicy, AnnounceQuery, AnnouncerPolicy, Mode, NodeChoice, PolicyError, PoolView,
};
use herald_core::selector::Labels;
use herald_core::service::Service;
use wasmtime::component::{
    ComponentExportIndex, HasData, InstancePre, Linker, Resource, ResourceTable,
};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::convert;
use crate::host::Host;
use crate::{Error, Result};

/// The code wasmtime generates from `wit/` (one module per world; the
/// shared interfaces are generated once, in `allocator`).
#[allow(missing_docs)]
pub(crate) mod bindings {
    pub mod allocator {
        wasmtime::component::bindgen!({
            path: "../../wit",
            world: "allocator",
            with: { "herald:policy/pools.pool": crate::plugin::PoolHandle },
        });
    }
    pub mod announcer {
        wasmtime::component::bindgen!({
            path: "../../wit",
            world: "announcer",
            with: {
                "herald:policy/types": super::allocator::herald::policy::types,
                "herald:policy/log": super::allocator::herald::policy::log,
            },
        });
    }
    pub mod cni {
        wasmtime::component::bindgen!({
            path: "../../wit",
            world: "cni-chain",
            with: {
                "herald:policy/types": super::allocator::herald::policy::types,
                "herald:policy/log": super::allocator::herald::policy::log,
            },
        });
    }
}

use bindings::allocator::herald::policy::{log, pools, types};
use bindings::announcer::exports::herald::policy::announce::Choice;
use bindings::announcer::herald::policy::nodes;

/// What `announce` returns.
type AnnounceAnswer = Result<Vec<Choice>, String>;

/// Bytes of a plugin's stdout/stderr kept per call: enough for a panic
/// message, too little to matter.
const OUTPUT_CAPACITY: usize = 4096;

/// Log lines a plugin may write per call; more are dropped (counted).
const LOG_LINES_PER_CALL: u32 = 16;

/// Longest log line kept, in bytes.
const LOG_LINE_BYTES: usize = 512;

/// Longest error message of a plugin kept in a report, in bytes.
const MESSAGE_BYTES: usize = 1024;

/// The pool resource handed to an allocator: a marker; the view itself is
/// the store's `State::pool` (one pool per call).
pub struct PoolHandle;

/// The data of one call's `Store`.
pub struct State {
    plugin: Arc<str>,
    limits: StoreLimits,
    /// Built on the plugin's first WASI call: most calls make none, and
    /// building a context (it seeds a random generator) costs more than a
    /// whole small decision.
    wasi: Option<WasiCtx>,
    /// Where the plugin's stdout and stderr go.
    output: MemoryOutputPipe,
    table: ResourceTable,
    pool: Option<Box<dyn PoolView + Send + Sync>>,
    /// The labels of an announce call's eligible nodes, in query order.
    node_labels: Vec<Arc<Labels>>,
    logged: u32,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let output = &self.output;
        let ctx = self.wasi.get_or_insert_with(|| {
            // No environment, no arguments, empty stdin, captured output.
            WasiCtx::builder()
                .stdout(output.clone())
                .stderr(output.clone())
                .build()
        });
        WasiCtxView {
            ctx,
            table: &mut self.table,
        }
    }
}

impl types::Host for State {}

impl log::Host for State {
    fn log(&mut self, level: log::Level, message: String) {
        self.logged += 1;
        if self.logged > LOG_LINES_PER_CALL {
            return;
        }
        let message = truncate(&message, LOG_LINE_BYTES);
        let plugin = &*self.plugin;
        match level {
            log::Level::Debug => tracing::debug!(plugin, message, "plugin log"),
            log::Level::Info => tracing::info!(plugin, message, "plugin log"),
            log::Level::Warn => tracing::warn!(plugin, message, "plugin log"),
        }
    }
}

impl pools::Host for State {}

impl nodes::Host for State {
    fn label(&mut self, node: u32, key: String) -> Option<String> {
        self.node_labels.get(node as usize)?.get(&key).cloned()
    }

    fn labels(&mut self, node: u32) -> Vec<types::Pair> {
        self.node_labels
            .get(node as usize)
            .map_or_else(Vec::new, |l| convert::pairs(l))
    }
}

impl pools::HostPool for State {
    fn name(&mut self, _: Resource<PoolHandle>) -> String {
        self.pool
            .as_ref()
            .map_or_else(String::new, |p| p.name().to_owned())
    }

    fn family(&mut self, _: Resource<PoolHandle>) -> types::Family {
        match self.pool.as_ref().map(|p| p.family()) {
            Some(herald_core::Family::IPv6) => types::Family::Ipv6,
            _ => types::Family::Ipv4,
        }
    }

    fn capacity(&mut self, _: Resource<PoolHandle>) -> u64 {
        self.pool.as_ref().map_or(0, |p| saturate(p.capacity()))
    }

    fn free_count(&mut self, _: Resource<PoolHandle>) -> u64 {
        self.pool.as_ref().map_or(0, |p| saturate(p.free_count()))
    }

    fn is_free(&mut self, _: Resource<PoolHandle>, ip: types::IpAddress) -> bool {
        self.pool
            .as_ref()
            .is_some_and(|p| p.is_free(convert::ip_from_wit(ip)))
    }

    fn next_free_after(
        &mut self,
        _: Resource<PoolHandle>,
        after: Option<types::IpAddress>,
    ) -> Option<types::IpAddress> {
        let p = self.pool.as_ref()?;
        p.next_free_after(after.map(convert::ip_from_wit))
            .map(convert::ip_to_wit)
    }

    fn bounds(&mut self, _: Resource<PoolHandle>) -> Option<(types::IpAddress, types::IpAddress)> {
        let (lo, hi) = self.pool.as_ref()?.bounds()?;
        Some((convert::ip_to_wit(lo), convert::ip_to_wit(hi)))
    }

    fn drop(&mut self, _: Resource<PoolHandle>) -> wasmtime::Result<()> {
        Ok(())
    }
}

fn saturate(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Cuts `s` to at most `max` bytes, at a character boundary.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

/// The store data type of the standard streams' host functions.
struct HasIo;

fn io(t: &mut State) -> &mut ResourceTable {
    &mut t.table
}

impl HasData for HasIo {
    type Data<'a> = &'a mut ResourceTable;
}

/// The linker of one world: the world's imports and the granted WASI
/// interfaces ([`crate::host::WASI_ALLOWED`]), nothing else.
pub(crate) fn linker(engine: &Engine, world: World) -> Result<Linker<State>> {
    use wasmtime::component::HasSelf;
    use wasmtime_wasi::p2::bindings::{cli, sync};
    let mut l = Linker::new(engine);
    let e = |e: wasmtime::Error| Error::Engine(format!("linking the {world} world: {e:#}"));
    match world {
        World::Allocator => {
            bindings::allocator::Allocator::add_to_linker::<State, HasSelf<State>>(&mut l, |s| s)
        }
        World::Announcer => {
            bindings::announcer::Announcer::add_to_linker::<State, HasSelf<State>>(&mut l, |s| s)
        }
        World::CniChain => {
            bindings::cni::CniChain::add_to_linker::<State, HasSelf<State>>(&mut l, |s| s)
        }
    }
    .map_err(e)?;
    (|| -> wasmtime::Result<()> {
        sync::io::error::add_to_linker::<State, HasIo>(&mut l, io)?;
        sync::io::poll::add_to_linker::<State, HasIo>(&mut l, io)?;
        sync::io::streams::add_to_linker::<State, HasIo>(&mut l, io)?;
        cli::exit::add_to_linker::<State, WasiCli>(&mut l, State::cli)?;
        cli::environment::add_to_linker::<State, WasiCli>(&mut l, State::cli)?;
        cli::stdin::add_to_linker::<State, WasiCli>(&mut l, State::cli)?;
        cli::stdout::add_to_linker::<State, WasiCli>(&mut l, State::cli)?;
        cli::stderr::add_to_linker::<State, WasiCli>(&mut l, State::cli)?;
        cli::terminal_input::add_to_linker::<State, WasiCli>(&mut l, State::cli)?;
        cli::terminal_output::add_to_linker::<State, WasiCli>(&mut l, State::cli)?;
        cli::terminal_stdin::add_to_linker::<State, WasiCli>(&mut l, State::cli)?;
        cli::terminal_stdout::add_to_linker::<State, WasiCli>(&mut l, State::cli)?;
        cli::terminal_stderr::add_to_linker::<State, WasiCli>(&mut l, State::cli)?;
        Ok(())
    })()
    .map_err(e)?;
    Ok(l)
}

/// A pre-linked component of one world, with its exports looked up.
#[derive(Clone)]
pub(crate) enum Pre {
    Allocator(bindings::allocator::AllocatorPre<State>),
    /// With the index of the `announce` function, called directly with
    /// borrowed arguments ([`convert::QueryRef`]).
    Announcer(
        bindings::announcer::AnnouncerPre<State>,
        ComponentExportIndex,
    ),
    CniChain(bindings::cni::CniChainPre<State>),
}

impl Pre {
    /// Type-checks the component's exports against the world.
    pub(crate) fn new(world: World, pre: InstancePre<State>) -> wasmtime::Result<Pre> {
        Ok(match world {
            World::Allocator => Pre::Allocator(bindings::allocator::AllocatorPre::new(pre)?),
            World::Announcer => {
                let component = pre.component();
                let announce = component
                    .get_export_index(None, "herald:policy/announce@0.1.0")
                    .and_then(|i| component.get_export_index(Some(&i), "announce"))
                    .ok_or_else(|| {
                        wasmtime::format_err!("no export herald:policy/announce@0.1.0#announce")
                    })?;
                Pre::Announcer(bindings::announcer::AnnouncerPre::new(pre)?, announce)
            }
            World::CniChain => Pre::CniChain(bindings::cni::CniChainPre::new(pre)?),
        })
    }
}

/// What one call's host functions read: the allocator's pool, the
/// announcer's node labels.
#[derive(Default)]
struct Inputs {
    pool: Option<Box<dyn PoolView + Send + Sync>>,
    node_labels: Vec<Arc<Labels>>,
}

/// One loaded version of a plugin: checked, compiled, pre-linked.
#[derive(Clone)]
pub struct Loaded {
    host: Host,
    name: Arc<str>,
    world: World,
    digest: [u8; 32],
    config: String,
    failure_policy: FailurePolicy,
    timeout_ms: u32,
    memory_bytes: usize,
    pre: Pre,
}

/// How a call failed, before it becomes a [`PolicyError`].
fn failure(
    name: &str,
    world: World,
    e: &wasmtime::Error,
    output: &MemoryOutputPipe,
    elapsed: std::time::Duration,
) -> String {
    let what = match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => "ran out of time (timeoutMs)".to_owned(),
        Some(Trap::UnreachableCodeReached) => "trapped (unreachable: a panic or abort)".to_owned(),
        Some(trap) => format!("trapped: {trap}"),
        None => {
            let text = format!("{e:#}");
            if text.contains("memory") && text.contains("limit") {
                format!("ran out of memory (memoryLimitMiB): {text}")
            } else {
                format!("failed: {text}")
            }
        }
    };
    let what = format!("{what} after {} µs", elapsed.as_micros());
    let out = output.contents();
    let out = String::from_utf8_lossy(&out);
    let out = out.trim();
    tracing::warn!(plugin = name, world = %world, failure = %what, output = %out, "policy plugin failed");
    if out.is_empty() {
        what
    } else {
        format!("{what}; its output: {}", truncate(out, MESSAGE_BYTES))
    }
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("name", &self.name)
            .field("world", &self.world)
            .field("digest", &self.digest())
            .field("failure_policy", &self.failure_policy)
            .field("timeout_ms", &self.timeout_ms)
            .field("memory_bytes", &self.memory_bytes)
            .finish_non_exhaustive()
    }
}

impl Loaded {
    pub(crate) fn new(
        host: Host,
        name: &str,
        spec: &PolicyPluginSpec,
        digest: [u8; 32],
        pre: Pre,
    ) -> Loaded {
        Loaded {
            host,
            name: name.into(),
            world: spec.world,
            digest,
            config: spec.config_json.clone(),
            failure_policy: spec.failure_policy,
            timeout_ms: spec.timeout_ms,
            memory_bytes: (spec.memory_limit_mib as usize).saturating_mul(1 << 20),
            pre,
        }
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The world it implements.
    pub fn world(&self) -> World {
        self.world
    }

    /// The digest of its component, as 64 hex digits.
    pub fn digest(&self) -> String {
        sha256_hex(&self.digest)
    }

    /// What a failure leads to.
    pub fn failure_policy(&self) -> FailurePolicy {
        self.failure_policy
    }

    /// A fresh store for one call: limits, deadline, captured output (the
    /// WASI context is built only if the plugin uses it).
    fn store(&self, inputs: Inputs) -> (Store<State>, MemoryOutputPipe) {
        let output = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.memory_bytes)
            .trap_on_grow_failure(true)
            .instances(64)
            .tables(64)
            .memories(16)
            .build();
        let mut store = Store::new(
            self.host.engine(),
            State {
                plugin: self.name.clone(),
                limits,
                wasi: None,
                output: output.clone(),
                table: ResourceTable::new(),
                pool: inputs.pool,
                node_labels: inputs.node_labels,
                logged: 0,
            },
        );
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(self.host.ticks(self.timeout_ms));
        store.epoch_deadline_trap();
        (store, output)
    }

    fn error(&self, message: String) -> PolicyError {
        PolicyError {
            plugin: self.name.to_string(),
            message,
        }
    }

    /// Runs `f` in a fresh store and turns every way it can go wrong into
    /// a [`PolicyError`].
    fn call<R>(
        &self,
        inputs: Inputs,
        f: impl FnOnce(&Pre, &mut Store<State>) -> wasmtime::Result<Result<R, String>>,
    ) -> Result<R, PolicyError> {
        let (mut store, output) = self.store(inputs);
        let started = Instant::now();
        let result = f(&self.pre, &mut store);
        let elapsed = started.elapsed();
        match result {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(message)) => Err(self.error(format!(
                "answered with an error: {}",
                truncate(&message, MESSAGE_BYTES)
            ))),
            Err(e) => Err(self.error(failure(&self.name, self.world, &e, &output, elapsed))),
        }
    }

    /// Calls the world's `validate-config` with the plugin's config.
    pub fn validate_config(&self) -> Result<(), String> {
        self.validate(&self.config)
    }

    /// Calls the world's `validate-config` with `config`.
    pub fn validate(&self, config: &str) -> Result<(), String> {
        let config = config.to_owned();
        self.call(Inputs::default(), move |pre, store| match pre {
            Pre::Allocator(p) => p
                .instantiate(&mut *store)?
                .herald_policy_allocate()
                .call_validate_config(store, &config),
            Pre::Announcer(p, _) => p
                .instantiate(&mut *store)?
                .herald_policy_announce()
                .call_validate_config(store, &config),
            Pre::CniChain(p) => p
                .instantiate(&mut *store)?
                .herald_policy_chain()
                .call_validate_config(store, &config),
        })
        .map_err(|e| e.message)
    }

    /// Instantiates the component in a fresh store and drops it (what every
    /// call pays before its own work; for benchmarks).
    pub fn instantiate_only(&self) -> Result<(), PolicyError> {
        self.call(Inputs::default(), |pre, store| {
            match pre {
                Pre::Allocator(p) => {
                    p.instantiate(store)?;
                }
                Pre::Announcer(p, _) => {
                    p.instantiate(store)?;
                }
                Pre::CniChain(p) => {
                    p.instantiate(store)?;
                }
            }
            Ok(Ok(()))
        })
    }

    fn wrong_world(&self, wanted: World) -> PolicyError {
        self.error(format!("is a {} plugin, called as {wanted}", self.world))
    }

    /// Asks a cni-chain plugin for the actions of `pod`, validated.
    pub fn setup(&self, pod: &Pod) -> Result<Vec<Action>, PolicyError> {
        if self.world != World::CniChain {
            return Err(self.wrong_world(World::CniChain));
        }
        let wit_pod = convert::pod_to_wit(pod);
        let config = &self.config;
        let answer = self.call(Inputs::default(), |pre, store| {
            let Pre::CniChain(p) = pre else {
                unreachable!("world checked above")
            };
            p.instantiate(&mut *store)?
                .herald_policy_chain()
                .call_setup(store, config, &wit_pod)
        })?;
        let actions = answer.into_iter().map(convert::action_from_wit).collect();
        validate_actions(pod, actions).map_err(|m| self.error(m))
    }
}

impl AllocatorPolicy for Loaded {
    fn choose(
        &self,
        service: &Service,
        pool: &dyn PoolView,
    ) -> Result<Option<std::net::IpAddr>, PolicyError> {
        if self.world != World::Allocator {
            return Err(self.wrong_world(World::Allocator));
        }
        let svc = convert::service_to_wit(service);
        let config = &self.config;
        let inputs = Inputs {
            pool: Some(pool.to_static()),
            ..Inputs::default()
        };
        let answer = self.call(inputs, |pre, store| {
            let Pre::Allocator(p) = pre else {
                unreachable!("world checked above")
            };
            let instance = p.instantiate(&mut *store)?;
            let handle = Resource::<PoolHandle>::new_borrow(0);
            instance
                .herald_policy_allocate()
                .call_choose(store, config, &svc, handle)
        })?;
        let Some(ip) = answer else {
            return Ok(None);
        };
        let ip = convert::ip_from_wit(ip);
        if !pool.is_free(ip) {
            return Err(self.error(format!(
                "chose {ip} for {}, which is not a free {} address of pool {:?}",
                service.id,
                pool.family(),
                pool.name()
            )));
        }
        Ok(Some(ip))
    }
}

impl AnnouncerPolicy for Loaded {
    fn announce(&self, query: &AnnounceQuery<'_>) -> Result<Vec<NodeChoice>, PolicyError> {
        if self.world != World::Announcer {
            return Err(self.wrong_world(World::Announcer));
        }
        let (q, node_labels) = convert::query_to_wit(query);
        let config = &self.config;
        let inputs = Inputs {
            node_labels,
            ..Inputs::default()
        };
        let answer = self.call(inputs, |pre, store| {
            let Pre::Announcer(p, announce) = pre else {
                unreachable!("world checked above")
            };
            let instance = p.instance_pre().instantiate(&mut *store)?;
            let f = instance.get_typed_func::<(&str, &convert::QueryRef<'_>), (AnnounceAnswer,)>(
                &mut *store,
                announce,
            )?;
            let (answer,) = f.call(&mut *store, (config, &q))?;
            Ok(answer)
        })?;
        convert::check_choices(query, answer).map_err(|m| self.error(m))
    }
}

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
        match host.load(old.name(), spec, bytes) {
            Ok(new) => {
                tracing::info!(
                    plugin = old.name(),
                    from = %old.digest(),
                    to = %new.digest(),
                    "policy plugin replaced"
                );
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
                Ok(())
            }
            Err(e) => {
                tracing::warn!(
                    plugin = old.name(),
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

impl CniPolicy for Loaded {
    fn setup(&self, pod: &Pod) -> Result<Vec<Action>, PolicyError> {
        Loaded::setup(self, pod)
    }
}

impl CniPolicy for WasmPlugin {
    fn setup(&self, pod: &Pod) -> Result<Vec<Action>, PolicyError> {
        self.current().setup(pod)
    }
}

/// Whether a query is for L2 (exactly one node) — used by validation.
pub(crate) fn is_l2(query: &AnnounceQuery<'_>) -> bool {
    query.mode == Mode::L2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(node_labels: Vec<Arc<Labels>>) -> State {
        State {
            plugin: "p".into(),
            limits: StoreLimitsBuilder::new().build(),
            wasi: None,
            output: MemoryOutputPipe::new(OUTPUT_CAPACITY),
            table: ResourceTable::new(),
            pool: None,
            node_labels,
            logged: 0,
        }
    }

    #[test]
    fn node_labels_are_read_by_index_and_missing_ones_are_none() {
        let labels = Labels::from([
            ("b".to_owned(), "2".to_owned()),
            ("a".to_owned(), "1".to_owned()),
        ]);
        let mut s = state(vec![Arc::new(Labels::new()), Arc::new(labels)]);
        assert_eq!(nodes::Host::label(&mut s, 1, "a".into()), Some("1".into()));
        assert_eq!(nodes::Host::label(&mut s, 1, "c".into()), None);
        assert_eq!(nodes::Host::label(&mut s, 0, "a".into()), None);
        assert_eq!(nodes::Host::label(&mut s, 7, "a".into()), None);
        let all: Vec<(String, String)> = nodes::Host::labels(&mut s, 1)
            .into_iter()
            .map(|p| (p.key, p.value))
            .collect();
        assert_eq!(all, [("a".into(), "1".into()), ("b".into(), "2".into())]);
        assert!(nodes::Host::labels(&mut s, 2).is_empty());
    }
}
