//! What one call's `Store` holds ([`State`]): limits, captured output, the
//! inputs the host functions read; the host functions themselves; the
//! linker of each world; and [`Pre`], a component pre-linked against it.

use std::sync::Arc;

use herald_core::plugin::World;
use herald_core::policy::PoolView;
use herald_core::selector::Labels;
use wasmtime::component::{
    ComponentExportIndex, HasData, InstancePre, Linker, Resource, ResourceTable,
};
use wasmtime::{Engine, StoreLimits};
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::allocator::herald::policy::{log, pools, types};
use crate::bindings::announcer::herald::policy::nodes;
use crate::bindings::{self, PoolHandle};
use crate::convert;
use crate::error::{Error, Result};

/// Bytes of a plugin's stdout/stderr kept per call: enough for a panic
/// message, too little to matter.
pub(crate) const OUTPUT_CAPACITY: usize = 4096;

/// Log lines a plugin may write per call; more are dropped (counted).
const LOG_LINES_PER_CALL: u32 = 16;

/// Longest log line kept, in bytes.
const LOG_LINE_BYTES: usize = 512;

/// What one call's host functions read: the allocator's pool, the
/// announcer's node labels.
#[derive(Default)]
pub(crate) struct Inputs {
    pub(crate) pool: Option<Box<dyn PoolView + Send + Sync>>,
    pub(crate) node_labels: Vec<Arc<Labels>>,
}

/// The data of one call's `Store`.
pub struct State {
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

impl State {
    /// The data of a fresh store: `limits`, output captured in `output`.
    pub(crate) fn new(limits: StoreLimits, output: MemoryOutputPipe, inputs: Inputs) -> State {
        State {
            limits,
            wasi: None,
            output,
            table: ResourceTable::new(),
            pool: inputs.pool,
            node_labels: inputs.node_labels,
            logged: 0,
        }
    }

    /// The store's limits, for [`wasmtime::Store::limiter`].
    pub(crate) fn limits(&mut self) -> &mut StoreLimits {
        &mut self.limits
    }
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
        // Logged inside the call's span, which names the plugin.
        self.logged += 1;
        if self.logged > LOG_LINES_PER_CALL {
            return;
        }
        let message = truncate(&message, LOG_LINE_BYTES);
        match level {
            log::Level::Debug => tracing::debug!(message, "plugin log"),
            log::Level::Info => tracing::info!(message, "plugin log"),
            log::Level::Warn => tracing::warn!(message, "plugin log"),
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
pub(crate) fn truncate(s: &str, max: usize) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::StoreLimitsBuilder;

    fn state(node_labels: Vec<Arc<Labels>>) -> State {
        State::new(
            StoreLimitsBuilder::new().build(),
            MemoryOutputPipe::new(OUTPUT_CAPACITY),
            Inputs {
                pool: None,
                node_labels,
            },
        )
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
