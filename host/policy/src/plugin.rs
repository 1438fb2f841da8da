//! A loaded plugin: its pre-linked component, its limits, one fresh
//! `Store` per call inside a span naming the plugin, and the core's policy
//! traits implemented by calling it.

use std::sync::Arc;
use std::time::Instant;

use herald_core::cni::{Action, CniPolicy, Pod, validate_actions};
use herald_core::plugin::{FailurePolicy, PolicyPluginSpec, World, sha256_hex};
use herald_core::policy::{
    AllocatorPolicy, AnnounceQuery, AnnouncerPolicy, NodeChoice, PolicyError, PoolView,
};
use herald_core::service::Service;
use wasmtime::component::Resource;
use wasmtime::{Engine, Store, StoreLimitsBuilder, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use crate::bindings::PoolHandle;
use crate::bindings::announcer::exports::herald::policy::announce::Choice;
use crate::convert;
use crate::store::{Inputs, OUTPUT_CAPACITY, Pre, State, truncate};

/// What `announce` returns.
type AnnounceAnswer = Result<Vec<Choice>, String>;

/// Longest error message of a plugin kept in a report, in bytes.
const MESSAGE_BYTES: usize = 1024;

/// Bytes of an announcer's answer the host reads per eligible node (as
/// wasmtime's hostcall fuel: list lengths times element sizes, string
/// lengths). One choice is about 100 bytes, a node name at most 253, and
/// one 4,096-octet UPDATE carries under 4 KiB of communities and as much
/// of large communities: 16 KiB is twice what a choice can need. A longer
/// answer names more nodes than are eligible, or carries what no UPDATE
/// can, and is refused when its list length is read, before the host
/// copies any of it.
const ANSWER_BYTES_PER_NODE: usize = 16 << 10;

/// The span of one plugin's work (a call, a load, a replacement): the
/// events inside carry the plugin's name and world from it. At WARN so it
/// is enabled whenever the warnings inside it are.
pub(crate) fn span(name: &str, world: World) -> tracing::Span {
    tracing::warn_span!("plugin", plugin = name, %world)
}

/// One loaded version of a plugin: checked, compiled, pre-linked.
#[derive(Clone)]
pub struct Loaded {
    engine: Engine,
    /// The epoch deadline of a call, in ticks of the host's ticker.
    deadline_ticks: u64,
    /// The deadline of `validate-config` (at least
    /// [`VALIDATE_TIMEOUT_MS`](crate::host::VALIDATE_TIMEOUT_MS)).
    validate_ticks: u64,
    name: Arc<str>,
    world: World,
    digest: [u8; 32],
    config: String,
    failure_policy: FailurePolicy,
    timeout_ms: u32,
    memory_bytes: usize,
    pre: Pre,
}

/// How a call failed, before it becomes a [`PolicyError`]: one line
/// naming the limit that stopped it, if one did (wasmtime's own text
/// carries a multi-line backtrace, kept out of reports).
fn failure(
    e: &wasmtime::Error,
    output: &MemoryOutputPipe,
    elapsed: std::time::Duration,
    memory_bytes: usize,
) -> String {
    let mib = memory_bytes >> 20;
    let what = match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => "ran out of time (timeoutMs)".to_owned(),
        Some(Trap::UnreachableCodeReached) => "trapped (unreachable: a panic or abort)".to_owned(),
        // A Rust or C guest keeps its stack in its linear memory, below
        // its data: overflowing it writes below address 0.
        Some(Trap::MemoryOutOfBounds) => "trapped: out of bounds memory access (also how a stack overflow in the plugin shows: its stack lives in its linear memory)".to_owned(),
        Some(Trap::StackOverflow) => "trapped: stack overflow (call depth)".to_owned(),
        Some(trap) => format!("trapped: {trap}"),
        None => {
            let full = format!("{e:#}");
            let text = full.lines().next().unwrap_or_default();
            // wasmtime's hostcall fuel (its error type is private).
            if full.contains("fuel allocated for hostcalls") {
                format!("sent more data than the host accepts from one call: {text}")
            } else if full.contains("memory") && (full.contains("limit") || full.contains("grow")) {
                format!("ran out of memory (memoryLimitMiB {mib}): {text}")
            } else {
                format!("failed: {text}")
            }
        }
    };
    let what = format!("{what} after {} µs", elapsed.as_micros());
    let out = output.contents();
    let out = String::from_utf8_lossy(&out);
    let out = out.trim();
    tracing::warn!(failure = %what, output = %out, "policy plugin failed");
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
    /// A plugin whose calls run on `engine` and time out after
    /// `[decisions, validate-config]` epoch ticks (the host's rendering of
    /// `timeoutMs`, and of the longer load-time limit).
    pub(crate) fn new(
        engine: Engine,
        [deadline_ticks, validate_ticks]: [u64; 2],
        name: &str,
        spec: &PolicyPluginSpec,
        digest: [u8; 32],
        pre: Pre,
    ) -> Loaded {
        Loaded {
            engine,
            deadline_ticks,
            validate_ticks,
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
        let mut store = Store::new(&self.engine, State::new(limits, output.clone(), inputs));
        store.limiter(|s| s.limits());
        store.set_epoch_deadline(self.deadline_ticks);
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
        let _span = span(&self.name, self.world).entered();
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
            Err(e) => Err(self.error(failure(&e, &output, elapsed, self.memory_bytes))),
        }
    }

    /// Calls the world's `validate-config` with the plugin's config.
    pub fn validate_config(&self) -> Result<(), String> {
        self.validate(&self.config)
    }

    /// Calls the world's `validate-config` with `config`.
    pub fn validate(&self, config: &str) -> Result<(), String> {
        let config = config.to_owned();
        let ticks = self.validate_ticks;
        self.call(Inputs::default(), move |pre, store| {
            store.set_epoch_deadline(ticks);
            match pre {
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
            }
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
        let answer_bytes = query
            .eligible
            .len()
            .max(1)
            .saturating_mul(ANSWER_BYTES_PER_NODE);
        let answer = self.call(inputs, |pre, store| {
            let Pre::Announcer(p, announce) = pre else {
                unreachable!("world checked above")
            };
            store.set_hostcall_fuel(answer_bytes);
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

impl CniPolicy for Loaded {
    fn setup(&self, pod: &Pod) -> Result<Vec<Action>, PolicyError> {
        Loaded::setup(self, pod)
    }
}
