//! `herald plugin check` and `herald plugin bench`: tell a plugin author
//! what is wrong with a component before deploying it, and how fast it
//! decides (DESIGN.md §6, §7).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_core::announce::Rendezvous;
use herald_core::cni::Pod;
use herald_core::node::{Node, ZONE_LABEL};
use herald_core::plugin::{
    DEFAULT_CONFIG_JSON, DEFAULT_MEMORY_LIMIT_MIB, DEFAULT_TIMEOUT_MS, FailurePolicy,
    MAX_MEMORY_LIMIT_MIB, MAX_TIMEOUT_MS, PluginSource, PolicyPluginSpec, World,
};
use herald_core::policy::{AnnounceQuery, AnnouncerPolicy, Candidate, Mode, Policies};
use herald_core::pool::{PoolDecl, PoolSpec};
use herald_core::service::Service;
use herald_core::{Allocator, Config, Family, Snapshot};
use herald_policy::{Error, Host, Loaded, Registry};

/// `herald plugin …`.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Check a component: format, world, imports, config, and a sample call.
    Check(CheckArgs),
    /// Measure a component on generated inputs, beside the built-in policy.
    Bench(BenchArgs),
}

/// The component and what its `PolicyPlugin` would say, for both
/// commands.
#[derive(clap::Args)]
pub struct Component {
    /// The component (`.wasm`).
    file: PathBuf,
    /// The world it implements (default: whichever it does).
    #[arg(long, value_parser = parse_world)]
    world: Option<World>,
    /// The plugin's config, as JSON.
    #[arg(long, default_value = DEFAULT_CONFIG_JSON)]
    config: String,
    /// `timeoutMs`: the time limit of one call.
    #[arg(long, default_value_t = DEFAULT_TIMEOUT_MS,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_TIMEOUT_MS)))]
    timeout_ms: u32,
    /// `memoryLimitMiB`: the memory limit of one call.
    #[arg(long = "memory-limit-mib", default_value_t = DEFAULT_MEMORY_LIMIT_MIB,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_MEMORY_LIMIT_MIB)))]
    memory_limit_mib: u32,
}

/// Flags of `herald plugin check`.
#[derive(clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    component: Component,
}

/// Flags of `herald plugin bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    component: Component,
    /// The pool an allocator chooses from: a CIDR or a range (IPv6 for
    /// pools larger than a /24; the Services are of its family).
    #[arg(long, default_value = "198.51.100.0/24")]
    pool: String,
    /// Services allocated per timed decision round (allocators).
    #[arg(long, default_value_t = 3)]
    services: u32,
    /// Decisions to time.
    #[arg(long, default_value_t = 2000)]
    iterations: u32,
    /// Nodes in each announcer query.
    #[arg(long, default_value_t = 50)]
    nodes: usize,
}

/// The pool of `herald plugin check`'s sample allocation.
const DEFAULT_POOL: &str = "198.51.100.0/24";

/// The name the checked component runs under.
const SAMPLE: &str = "sample";

fn parse_world(s: &str) -> Result<World, String> {
    s.parse()
}

/// Runs `herald plugin …`.
pub fn run(command: &Command) -> ExitCode {
    let result = match command {
        Command::Check(a) => check(a),
        Command::Bench(a) => bench(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("herald plugin: {message}");
            ExitCode::FAILURE
        }
    }
}

fn spec(world: World, bytes: &[u8], c: &Component) -> PolicyPluginSpec {
    use sha2::{Digest, Sha256};
    PolicyPluginSpec {
        world,
        source: PluginSource::File(c.file.clone()),
        sha256: Sha256::digest(bytes).into(),
        config_json: c.config.clone(),
        failure_policy: FailurePolicy::Fail,
        timeout_ms: c.timeout_ms,
        memory_limit_mib: c.memory_limit_mib,
    }
}

/// Loads the component as `world`, or as whichever world it implements.
fn load(host: &Host, c: &Component) -> Result<(Loaded, Vec<u8>), String> {
    let (file, world, config) = (&c.file, c.world, &c.config);
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".to_owned());
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    herald_policy::host::check_format(&name, &bytes).map_err(|e| e.to_string())?;
    serde_json_check(config)?;
    let worlds: Vec<World> = world.map_or_else(|| World::ALL.to_vec(), |w| vec![w]);
    let mut why = Vec::new();
    for w in worlds {
        match host.load(&name, &spec(w, &bytes, c), &bytes) {
            Ok(l) => return Ok((l, bytes)),
            // Only a world mismatch is worth trying the next world for.
            Err(e @ (Error::WrongWorld { .. } | Error::ForbiddenImport { .. }))
                if world.is_none() =>
            {
                why.push(format!("  as {w}: {e}"));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(format!(
        "{} implements no herald:policy@0.1.0 world:\n{}",
        file.display(),
        why.join("\n")
    ))
}

/// The config must at least be JSON (the plugin checks the rest).
fn serde_json_check(config: &str) -> Result<(), String> {
    serde_json::from_str::<serde_json::Value>(config)
        .map(|_| ())
        .map_err(|e| format!("--config is not JSON: {e}"))
}

fn check(a: &CheckArgs) -> Result<(), String> {
    let host = Host::new().map_err(|e| e.to_string())?;
    let c = &a.component;
    let (plugin, bytes) = load(&host, c)?;
    println!("file:    {}", c.file.display());
    println!("sha256:  {}", plugin.digest());
    println!("world:   herald:policy/{}@0.1.0", plugin.world());
    let imports = herald_policy::host::imports(&host, &bytes).map_err(|e| e.to_string())?;
    println!("imports: {}", imports.join(", "));
    println!("config:  valid ({})", c.config);
    let registry = sample_registry(&host, spec(plugin.world(), &bytes, c))?;
    let snapshot = sample_snapshot(DEFAULT_POOL, 3)?;
    let sample = sample_call(&plugin, &registry, &snapshot)?;
    println!("sample call:\n{sample}");
    println!("ok");
    Ok(())
}

/// `n` ready nodes in three zones.
fn sample_nodes(n: usize) -> Vec<Node> {
    (0..n)
        .map(|i| Node {
            name: format!("node-{i:02}"),
            labels: Arc::new([(ZONE_LABEL.to_owned(), format!("zone-{}", i % 3))].into()),
            ready: true,
            addresses: vec![IpAddr::from([192, 0, 2, (i % 250) as u8 + 1])],
        })
        .collect()
}

fn sample_candidates(nodes: &[Node]) -> Vec<Candidate<'_>> {
    nodes
        .iter()
        .enumerate()
        .map(|(i, node)| Candidate {
            node,
            endpoints: (i % 4) as u32,
        })
        .collect()
}

fn sample_snapshot(pool: &str, services: u32) -> Result<Snapshot, String> {
    let entry = pool.parse().map_err(|e| format!("--pool {pool:?}: {e}"))?;
    let mut spec = PoolSpec::new(vec![entry]);
    spec.allocator_plugin = Some(SAMPLE.to_owned());
    let family = if pool.contains(':') {
        Family::IPv6
    } else {
        Family::IPv4
    };
    Ok(Snapshot {
        pools: vec![PoolDecl {
            name: "sample".to_owned(),
            created: None,
            spec: Ok(spec),
        }],
        services: (0..services)
            .map(|i| {
                let name = match i {
                    0..3 => ["web", "api", "db"][i as usize].to_owned(),
                    _ => format!("svc-{i}"),
                };
                let mut s = Service::new("shop", &name);
                s.families = vec![family];
                s
            })
            .collect(),
        ..Snapshot::default()
    })
}

/// A registry running the component as the plugin `sample`, the one
/// `sample_snapshot`'s pool asks for; `spec` says a failure fails the
/// decision.
fn sample_registry(host: &Host, spec: PolicyPluginSpec) -> Result<Registry, String> {
    let mut registry = Registry::with_host(host.clone());
    match registry
        .sync(&[(SAMPLE.to_owned(), spec)])
        .into_iter()
        .next()
    {
        Some(e) => Err(e.message),
        None => Ok(registry),
    }
}

/// One call on generated inputs, printed; an error if the plugin fails.
fn sample_call(
    plugin: &Loaded,
    registry: &Registry,
    snapshot: &Snapshot,
) -> Result<String, String> {
    let mut out = String::new();
    match plugin.world() {
        World::Allocator => {
            let policies = registry.policies();
            let plan = Allocator::new(snapshot, &Config::default(), &policies).into_plan();
            if let Some(e) = plan.errors.first() {
                return Err(e.message.clone());
            }
            for o in plan.services {
                let ips: Vec<String> = o.ips.iter().map(ToString::to_string).collect();
                out.push_str(&format!(
                    "  pool 198.51.100.0/24: {} -> {}\n",
                    o.service,
                    ips.join(",")
                ));
            }
        }
        World::Announcer => {
            let nodes = sample_nodes(6);
            let svc = Service::new("shop", "web");
            for mode in [Mode::L2, Mode::Bgp] {
                let q = AnnounceQuery {
                    vip: "198.51.100.7".parse().expect("an address"),
                    mode,
                    services: vec![&svc],
                    eligible: sample_candidates(&nodes),
                };
                let choices = plugin.announce(&q).map_err(|e| e.to_string())?;
                let text: Vec<String> = choices
                    .iter()
                    .map(|c| format!("{} (weight {})", c.node, c.weight))
                    .collect();
                out.push_str(&format!(
                    "  {mode:?} 198.51.100.7 over 6 nodes in 3 zones: {}\n",
                    text.join(", ")
                ));
            }
        }
        World::CniChain => {
            let pod = sample_pod();
            let actions = plugin.setup(&pod).map_err(|e| e.to_string())?;
            out.push_str(&format!(
                "  pod shop/web-1 behind shop/web (198.51.100.7): {} actions\n",
                actions.len()
            ));
            for a in actions {
                out.push_str(&format!("    {a}\n"));
            }
        }
    }
    Ok(out)
}

fn sample_pod() -> Pod {
    Pod {
        namespace: "shop".to_owned(),
        name: "web-1".to_owned(),
        interface: "eth0".to_owned(),
        addresses: vec!["10.244.0.5".parse().expect("an address")],
        services: vec![(
            Service::new("shop", "web"),
            vec!["198.51.100.7".parse().expect("an address")],
        )],
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn time(iterations: u32, mut f: impl FnMut() -> Result<(), String>) -> Result<Duration, String> {
    let mut samples = Vec::with_capacity(iterations as usize);
    for _ in 0..iterations {
        let start = Instant::now();
        f()?;
        samples.push(start.elapsed());
    }
    Ok(median(samples))
}

fn bench(a: &BenchArgs) -> Result<(), String> {
    let host = Host::new().map_err(|e| e.to_string())?;
    let (plugin, bytes) = load(&host, &a.component)?;
    let s = spec(plugin.world(), &bytes, &a.component);
    host.clear_cache();
    let (_, first) = host
        .load_timed(plugin.name(), &s, &bytes)
        .map_err(|e| e.to_string())?;
    let (_, cached) = host
        .load_timed(plugin.name(), &s, &bytes)
        .map_err(|e| e.to_string())?;
    println!(
        "load: first {:?} (compile {:?}), cached {:?}",
        first.compile + first.link,
        first.compile,
        cached.compile + cached.link
    );
    let inst = time(a.iterations, || {
        plugin.instantiate_only().map_err(|e| e.to_string())
    })?;
    println!("instantiate (fresh Store): median {inst:?}");
    let (wasm, native, what) = match plugin.world() {
        World::Announcer => {
            let nodes = sample_nodes(a.nodes);
            let svc = Service::new("shop", "web");
            let q = AnnounceQuery {
                vip: "198.51.100.7".parse().expect("an address"),
                mode: Mode::L2,
                services: vec![&svc],
                eligible: sample_candidates(&nodes),
            };
            let wasm = time(a.iterations, || {
                plugin.announce(&q).map(drop).map_err(|e| e.to_string())
            })?;
            let native = time(a.iterations, || {
                Rendezvous.announce(&q).map(drop).map_err(|e| e.to_string())
            })?;
            (wasm, native, format!("L2 announce over {} nodes", a.nodes))
        }
        World::Allocator => {
            let snapshot = sample_snapshot(&a.pool, a.services)?;
            let registry = sample_registry(&host, s.clone())?;
            let policies = registry.policies();
            // A plugin that fails every decision has nothing to time.
            let plan = Allocator::new(&snapshot, &Config::default(), &policies).into_plan();
            if let Some(e) = plan.errors.first() {
                return Err(format!("the plugin's decisions fail: {}", e.message));
            }
            let n = snapshot.services.len().max(1) as u32;
            let wasm = time(a.iterations, || {
                drop(Allocator::new(&snapshot, &Config::default(), &policies));
                Ok(())
            })? / n;
            let native = time(a.iterations, || {
                drop(Allocator::new(
                    &snapshot,
                    &Config::default(),
                    &Policies::default(),
                ));
                Ok(())
            })? / n;
            (
                wasm,
                native,
                format!("allocation per Service ({n} Services, pool {})", a.pool),
            )
        }
        World::CniChain => {
            let pod = sample_pod();
            let wasm = time(a.iterations, || {
                plugin.setup(&pod).map(drop).map_err(|e| e.to_string())
            })?;
            (wasm, Duration::ZERO, "pod setup".to_owned())
        }
    };
    println!("decision ({what}): median {wasm:?}; built-in {native:?}");
    if !wasm.is_zero() {
        println!(
            "decisions per second on one core: {:.0}",
            1.0 / wasm.as_secs_f64()
        );
    }
    Ok(())
}
