//! The engine, the epoch ticker, the compile cache, and loading: from
//! bytes to a [`Loaded`] plugin ready to be called.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_core::plugin::{PluginSource, PolicyPluginSpec, World, sha256_hex};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

use crate::error::{Error, Result};
use crate::plugin::{Loaded, span};
use crate::store::{Pre, State, linker};

/// How often the epoch ticker wakes: the granularity of `timeoutMs`. The
/// epoch follows the clock (a late wake-up catches up), so a call overruns
/// its deadline by about one tick plus the ticker's scheduling delay and
/// the time to unwind.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// The least time `validate-config` gets: it runs at load time, off the
/// decision path, and a first call also builds the instance's memory image
/// (milliseconds idle, tens on a loaded machine), which a 20 ms decision
/// deadline would otherwise turn into a refused plugin.
pub const VALIDATE_TIMEOUT_MS: u32 = 1000;

/// The WASI interfaces a plugin may import besides its world's own: what
/// Rust's standard library (wasm32-wasip2) links in for arguments,
/// environment, exit and standard streams. The host gives no environment,
/// no arguments and empty stdin; stdout and stderr go to a small buffer.
/// Files, sockets, clocks, randomness and HTTP are never granted: a policy
/// is a pure, replayable function.
pub const WASI_ALLOWED: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
];

/// The WASI package versions the host links (those wasmtime-wasi 48
/// serves): a component built against any 0.2.x release type-checks.
const WASI_VERSION_PREFIX: &str = "@0.2.";

/// The herald interfaces each world imports.
fn world_imports(world: World) -> &'static [&'static str] {
    match world {
        World::Allocator => &[
            "herald:policy/types@0.1.0",
            "herald:policy/log@0.1.0",
            "herald:policy/pools@0.1.0",
        ],
        World::Announcer => &[
            "herald:policy/types@0.1.0",
            "herald:policy/log@0.1.0",
            "herald:policy/nodes@0.1.0",
        ],
        World::CniChain => &["herald:policy/types@0.1.0", "herald:policy/log@0.1.0"],
    }
}

/// Whether `import` (a component import name) is granted to `world`.
pub fn import_allowed(world: World, import: &str) -> bool {
    world_imports(world).contains(&import)
        || WASI_ALLOWED.iter().any(|w| {
            import
                .strip_prefix(w)
                .is_some_and(|v| v.starts_with(WASI_VERSION_PREFIX))
        })
}

/// Options of a [`Host`].
#[derive(Clone, Copy, Debug)]
pub struct HostOptions {
    /// How often the epoch ticks (default [`EPOCH_TICK`]).
    pub tick: Duration,
    /// Plugin calls that may run at once (default
    /// [`DEFAULT_CONCURRENT_CALLS`]): the size of the pre-allocated
    /// instance pool. A call beyond it fails (a plugin failure), it does
    /// not wait.
    pub concurrent_calls: u32,
}

/// Default [`HostOptions::concurrent_calls`]: decisions are taken one at a
/// time per reconcile; 64 leaves room for every thread of a busy speaker.
pub const DEFAULT_CONCURRENT_CALLS: u32 = 64;

/// Core instances in one plugin component: Rust's wasm32-wasip2 output has
/// the main module plus a few adapter shims; 16 is ample.
const CORE_INSTANCES_PER_COMPONENT: u32 = 16;

/// Bytes of a linear memory kept resident and reset in place when a slot
/// is reused, instead of being returned to the kernel: a fresh `Store` then
/// costs no page faults for the plugin's stack and small heap. Where the
/// kernel has `PAGEMAP_SCAN` (Linux 6.7+, enabled below) only the pages the
/// last call dirtied are reset; elsewhere all of it is `memset`.
const KEEP_RESIDENT: usize = 1 << 20;

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            tick: EPOCH_TICK,
            concurrent_calls: DEFAULT_CONCURRENT_CALLS,
        }
    }
}

/// The WebAssembly host: one engine for every plugin, its epoch ticker, a
/// linker per world, and compiled components cached by digest.
///
/// Cheap to clone (shared). The ticker thread stops when the last clone,
/// and the last plugin it loaded, are dropped (they share the engine).
#[derive(Clone)]
pub struct Host {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linkers: HashMap<World, Linker<State>>,
    /// Compiled components by (digest, engine): one compile per digest,
    /// however many plugins or reloads use it.
    cache: Mutex<HashMap<CacheKey, Component>>,
    /// Hash of the engine's compilation settings: a compiled artifact is
    /// reusable only by an engine with the same settings.
    engine_hash: u64,
    tick: Duration,
}

/// A compile-cache key: the component's digest and the engine's hash.
type CacheKey = ([u8; 32], u64);

/// How a load went: where the compiled component came from and how long
/// it took (for `herald plugin bench` and logs).
#[derive(Clone, Copy, Debug)]
pub struct LoadTimes {
    /// Whether the compiled component came from the cache.
    pub cached: bool,
    /// Compiling (or fetching from the cache).
    pub compile: Duration,
    /// Checks, pre-instantiation and config validation.
    pub link: Duration,
}

impl Host {
    /// A host with default options.
    pub fn new() -> Result<Host> {
        Host::with_options(HostOptions::default())
    }

    /// A host with the given options.
    pub fn with_options(options: HostOptions) -> Result<Host> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        // Deadlines by epoch: a counter check on loop back-edges and
        // function entries, far cheaper than fuel metering.
        config.epoch_interruption(true);
        // A pool of pre-reserved instance slots: instantiating per call
        // then reuses memory instead of mapping it afresh. Slots reserve
        // address space for the largest memory limit a plugin may ask for;
        // the per-plugin limit is enforced by `StoreLimits`.
        let calls = options.concurrent_calls.max(1);
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        pool.total_component_instances(calls)
            .total_core_instances(calls * CORE_INSTANCES_PER_COMPONENT)
            .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
            .total_memories(calls * 2)
            .total_tables(calls * CORE_INSTANCES_PER_COMPONENT)
            .max_memory_size(herald_core::plugin::MAX_MEMORY_LIMIT_MIB as usize * (1 << 20))
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT)
            // Reset only dirtied pages when the kernel can tell which: a
            // call then costs ~12 µs less than with a 1 MiB `memset`.
            .pagemap_scan(wasmtime::Enabled::Auto);
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| Error::Engine(e.to_string()))?;
        let mut linkers = HashMap::new();
        for world in World::ALL {
            linkers.insert(world, linker(&engine, world)?);
        }
        let mut h = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_hash = h.finish();

        let weak = engine.weak();
        let tick = options.tick;
        std::thread::Builder::new()
            .name("herald-wasm-epoch".to_owned())
            .spawn(move || {
                // The epoch follows the clock, not the number of wake-ups:
                // on a loaded machine a sleep of one tick often lasts
                // several, and counting wake-ups stretched a 20 ms
                // deadline to 40 ms and more. Each wake-up advances the
                // epoch to the ticks elapsed since the start, so a deadline
                // is late only by the one wake-up that notices it.
                let start = Instant::now();
                let mut epoch: u128 = 0;
                let tick_ns = tick.as_nanos().max(1);
                // Upgraded per tick, so the engine is freed once the host
                // is gone and the thread ends by itself.
                while let Some(engine) = weak.upgrade() {
                    let due = start.elapsed().as_nanos() / tick_ns + 1;
                    while epoch < due {
                        engine.increment_epoch();
                        epoch += 1;
                    }
                    drop(engine);
                    std::thread::sleep(tick);
                }
            })
            .map_err(|e| Error::Engine(format!("starting the epoch ticker: {e}")))?;

        Ok(Host {
            inner: Arc::new(Inner {
                engine,
                linkers,
                cache: Mutex::new(HashMap::new()),
                engine_hash,
                tick,
            }),
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Epoch ticks for a time limit: rounded up, plus one because the
    /// current tick may be almost over.
    pub(crate) fn ticks(&self, timeout_ms: u32) -> u64 {
        let tick = self.inner.tick.as_micros().max(1) as u64;
        (u64::from(timeout_ms) * 1000).div_ceil(tick) + 1
    }

    /// Forgets every compiled component (for benchmarks of the first load).
    pub fn clear_cache(&self) {
        self.cache().clear();
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Component>> {
        // A panic while holding the lock cannot leave the map inconsistent.
        self.inner
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Loads a plugin: digest, format, imports, world, config (see the
    /// crate docs). `name` is the `PolicyPlugin`'s name.
    pub fn load(&self, name: &str, spec: &PolicyPluginSpec, bytes: &[u8]) -> Result<Loaded> {
        self.load_timed(name, spec, bytes).map(|(l, _)| l)
    }

    /// [`Host::load`], also saying how long compiling and linking took.
    pub fn load_timed(
        &self,
        name: &str,
        spec: &PolicyPluginSpec,
        bytes: &[u8],
    ) -> Result<(Loaded, LoadTimes)> {
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        if digest != spec.sha256 {
            return Err(Error::Digest {
                plugin: name.to_owned(),
                expected: sha256_hex(&spec.sha256),
                actual: sha256_hex(&digest),
            });
        }
        let start = Instant::now();
        let (component, cached) = self.compile(name, &digest, bytes)?;
        let compile = start.elapsed();
        let start = Instant::now();
        check_export(&self.inner.engine, name, spec.world, &component)?;
        check_imports(&self.inner.engine, name, spec.world, &component)?;
        let linker = &self.inner.linkers[&spec.world];
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(|e| Error::WrongWorld {
                plugin: name.to_owned(),
                world: spec.world,
                message: format!("{e:#}"),
            })?;
        let pre = Pre::new(spec.world, instance_pre).map_err(|e| Error::WrongWorld {
            plugin: name.to_owned(),
            world: spec.world,
            message: format!("{e:#}"),
        })?;
        let loaded = Loaded::new(
            self.inner.engine.clone(),
            [
                self.ticks(spec.timeout_ms),
                self.ticks(spec.timeout_ms.max(VALIDATE_TIMEOUT_MS)),
            ],
            name,
            spec,
            digest,
            pre,
        );
        loaded.validate_config().map_err(|message| Error::Config {
            plugin: name.to_owned(),
            message,
        })?;
        let link = start.elapsed();
        // Entered after the config call, which has its own span.
        let _span = span(name, spec.world).entered();
        tracing::info!(
            digest = %sha256_hex(&digest),
            cached,
            compile_us = compile.as_micros() as u64,
            "policy plugin loaded"
        );
        Ok((
            loaded,
            LoadTimes {
                cached,
                compile,
                link,
            },
        ))
    }

    /// The compiled component for `bytes`, from the cache or compiled now.
    fn compile(&self, name: &str, digest: &[u8; 32], bytes: &[u8]) -> Result<(Component, bool)> {
        let key = (*digest, self.inner.engine_hash);
        if let Some(c) = self.cache().get(&key) {
            return Ok((c.clone(), true));
        }
        check_format(name, bytes)?;
        let component = Component::new(&self.inner.engine, bytes).map_err(|e| Error::Compile {
            plugin: name.to_owned(),
            message: compile_error(&e, bytes.len()),
        })?;
        self.cache().insert(key, component.clone());
        Ok((component, false))
    }
}

/// The largest component read from a file: 64 MiB. Herald's own plugins
/// are under 1 MiB and a component with a language runtime inside a few
/// MiB; the limit keeps a `source.file` of `/dev/zero` or a huge file from
/// filling memory.
pub const MAX_COMPONENT_BYTES: u64 = 64 << 20;

/// Reads a plugin's component from its source. Only files are read here;
/// a ConfigMap source needs the Kubernetes API. Only a regular file is
/// opened (a FIFO would block, a device never ends), and no more than
/// [`MAX_COMPONENT_BYTES`] of it.
pub fn read_source(name: &str, spec: &PolicyPluginSpec) -> Result<Vec<u8>> {
    match &spec.source {
        PluginSource::File(path) => read_limited(path).map_err(|source| Error::Read {
            plugin: name.to_owned(),
            path: path.display().to_string(),
            source,
        }),
        PluginSource::ConfigMap {
            namespace,
            name: cm,
            key,
        } => Err(Error::Source {
            plugin: name.to_owned(),
            message: format!(
                "source.configMap {namespace}/{cm} (key {key:?}) is read from the cluster; offline only source.file works"
            ),
        }),
    }
}

/// wasmtime's compile error, said the way a plugin author can act on it:
/// a file cut short (a copy or download that stopped) is named as such
/// rather than as a section range or an end-of-file offset.
fn compile_error(e: &wasmtime::Error, len: usize) -> String {
    let text = format!("{e:#}");
    let truncated = text.contains("unexpected end-of-file")
        || (text.contains("section range") && text.contains(&format!("(bound = {len})")));
    if truncated {
        format!(
            "the file is truncated ({len} bytes: a copy or build that stopped early?); wasmtime: {text}"
        )
    } else {
        text
    }
}

/// A component's bytes: a regular file only (a FIFO or device would block
/// or never end), at most [`MAX_COMPONENT_BYTES`].
fn read_limited(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    if !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_COMPONENT_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_COMPONENT_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {} MiB",
            MAX_COMPONENT_BYTES >> 20
        )));
    }
    Ok(bytes)
}

/// Tells a component from a core module and from anything else, by the
/// header: `\0asm`, then the version and layer (component: 0x0d 0x00 0x01
/// 0x00; core module: 0x01 0x00 0x00 0x00).
pub fn check_format(name: &str, bytes: &[u8]) -> Result<()> {
    let reason = match bytes {
        [0, b'a', b's', b'm', 0x0d, 0x00, 0x01, 0x00, ..] => return Ok(()),
        [0, b'a', b's', b'm', 0x01, 0x00, 0x00, 0x00, ..] => {
            "is a core WebAssembly module, not a component: build for wasm32-wasip2 (or run `wasm-tools component new`)".to_owned()
        }
        [0, b'a', b's', b'm', ..] => "is WebAssembly of an unknown version or layer".to_owned(),
        _ if bytes.is_empty() => "is empty, not a WebAssembly component".to_owned(),
        _ => "is not WebAssembly at all (no \\0asm header)".to_owned(),
    };
    Err(Error::NotComponent {
        plugin: name.to_owned(),
        reason,
    })
}

/// The interface each world exports.
fn world_export(world: World) -> &'static str {
    match world {
        World::Allocator => "herald:policy/allocate@0.1.0",
        World::Announcer => "herald:policy/announce@0.1.0",
        World::CniChain => "herald:policy/chain@0.1.0",
    }
}

/// Refuses a component that does not export its world's interface, saying
/// what it exports instead (a plugin of another world is told so before
/// its imports are looked at).
fn check_export(engine: &Engine, name: &str, world: World, component: &Component) -> Result<()> {
    let wanted = world_export(world);
    let ty = component.component_type();
    let exports: Vec<&str> = ty.exports(engine).map(|(n, _)| n).collect();
    if exports.contains(&wanted) {
        return Ok(());
    }
    let other = World::ALL
        .into_iter()
        .find(|w| exports.contains(&world_export(*w)));
    let message = match other {
        Some(w) => format!(
            "it implements the {w} world (exports {}), not {world}: it lacks {wanted}",
            world_export(w)
        ),
        None => format!(
            "it lacks the export {wanted} (it exports: {})",
            exports.join(", ")
        ),
    };
    Err(Error::WrongWorld {
        plugin: name.to_owned(),
        world,
        message,
    })
}

/// Refuses a component importing anything its world does not grant,
/// naming every such import.
fn check_imports(engine: &Engine, name: &str, world: World, component: &Component) -> Result<()> {
    let ty = component.component_type();
    let mut imports: Vec<&str> = ty.imports(engine).map(|(n, _)| n).collect();
    imports.sort_unstable();
    let forbidden: Vec<String> = imports
        .into_iter()
        .filter(|i| !import_allowed(world, i))
        .map(str::to_owned)
        .collect();
    if forbidden.is_empty() {
        return Ok(());
    }
    Err(Error::ForbiddenImport {
        plugin: name.to_owned(),
        world,
        imports: forbidden,
    })
}

/// The import names of a component, sorted (for `herald plugin check`).
pub fn imports(host: &Host, component_bytes: &[u8]) -> Result<Vec<String>> {
    check_format("", component_bytes)?;
    let c = Component::new(host.engine(), component_bytes).map_err(|e| Error::Compile {
        plugin: String::new(),
        message: compile_error(&e, component_bytes.len()),
    })?;
    let mut v: Vec<String> = c
        .component_type()
        .imports(host.engine())
        .map(|(n, _)| n.to_owned())
        .collect();
    v.sort();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_grants_world_imports_and_std_wasi_only() {
        assert!(import_allowed(
            World::Allocator,
            "herald:policy/pools@0.1.0"
        ));
        assert!(!import_allowed(
            World::Announcer,
            "herald:policy/pools@0.1.0"
        ));
        assert!(import_allowed(World::Announcer, "wasi:cli/stderr@0.2.6"));
        assert!(import_allowed(World::CniChain, "wasi:io/streams@0.2.0"));
        for denied in [
            "wasi:filesystem/preopens@0.2.6",
            "wasi:sockets/tcp@0.2.6",
            "wasi:clocks/wall-clock@0.2.6",
            "wasi:random/random@0.2.6",
            "wasi:cli/stderr@0.3.0",
            "wasi:cli/stderr-extra@0.2.0",
            "herald:policy/log@0.2.0",
        ] {
            assert!(!import_allowed(World::Announcer, denied), "{denied}");
        }
    }

    #[test]
    fn sources_that_are_not_regular_files_or_too_large_are_refused() {
        let e = read_limited(std::path::Path::new("/dev/zero")).unwrap_err();
        assert_eq!(e.to_string(), "not a regular file");
        let file = std::env::temp_dir().join(format!("herald-big-{}.wasm", std::process::id()));
        let f = std::fs::File::create(&file).unwrap();
        // Sparse: no disk is used.
        f.set_len(MAX_COMPONENT_BYTES + 1).unwrap();
        let e = read_limited(&file).unwrap_err();
        assert_eq!(e.to_string(), "larger than 64 MiB");
        f.set_len(MAX_COMPONENT_BYTES).unwrap();
        assert_eq!(
            read_limited(&file).unwrap().len() as u64,
            MAX_COMPONENT_BYTES
        );
        std::fs::remove_file(&file).unwrap();
    }

    #[test]
    fn format_check_names_what_the_bytes_are() {
        let e = check_format("p", b"hello").unwrap_err().to_string();
        assert!(e.contains("not WebAssembly at all"), "{e}");
        let e = check_format("p", b"\0asm\x01\0\0\0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("core WebAssembly module"), "{e}");
        let e = check_format("p", b"").unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
        assert!(check_format("p", b"\0asm\x0d\0\x01\0").is_ok());
    }

    #[test]
    fn ticks_round_up_and_add_one() {
        let host = Host::new().unwrap();
        assert_eq!(host.ticks(20), 21);
        assert_eq!(host.ticks(1), 2);
    }
}
