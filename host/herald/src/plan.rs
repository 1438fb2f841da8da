//! `herald plan`: load manifests, allocate, print the plan as a table, JSON
//! or YAML (DESIGN.md §7).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use herald_core::{Allocator, Config, Plan, ServiceRef, Snapshot};
use herald_policy::Registry;
use serde::Serialize;

use crate::{EXIT_INVALID_INPUT, EXIT_MOVED, EXIT_PENDING};

/// Output formats.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Output {
    /// A table for people.
    Table,
    /// The plan as one JSON object.
    Json,
    /// The same object as YAML.
    Yaml,
}

/// Flags of `herald plan`.
#[derive(clap::Args)]
pub struct Args {
    /// Manifest files and directories (read recursively).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(
        short,
        long,
        value_enum,
        default_value = "table",
        env = "HERALD_OUTPUT"
    )]
    output: Output,
    /// Exit with 3 when any Service is Pending (for CI gates).
    #[arg(long, env = "HERALD_FAIL_ON_PENDING")]
    fail_on_pending: bool,
    /// Exit with 5 when any Service would lose an address its
    /// status.loadBalancer.ingress holds (a switch from another load
    /// balancer must move nothing).
    #[arg(long, env = "HERALD_FAIL_ON_MOVE")]
    fail_on_move: bool,
    /// The loadBalancerClass Herald serves (Services with another class are
    /// not Herald's).
    #[arg(long, default_value = herald_core::config::DEFAULT_LOAD_BALANCER_CLASS, env = "HERALD_LOAD_BALANCER_CLASS")]
    load_balancer_class: String,
}

/// Runs `herald plan`.
pub fn run(args: &Args) -> ExitCode {
    let manifests = match herald_api::load::load_paths(&args.paths) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("herald plan: {e}");
            return ExitCode::from(EXIT_INVALID_INPUT);
        }
    };
    for note in &manifests.notes {
        eprintln!("note: {note}");
    }
    let config = Config {
        load_balancer_class: args.load_balancer_class.clone(),
    };
    // Every PolicyPlugin is loaded, announcers too: a plan is where a
    // broken plugin should show, before it reaches a cluster.
    let mut registry = Registry::new();
    let plugin_errors = registry.sync(&manifests.plugins);
    let policies = registry.policies();
    let mut plan = Allocator::new(&manifests.snapshot, &config, &policies).into_plan();
    plan.errors.extend(plugin_errors);
    plan.errors.extend(manifests.errors);
    plan.errors.sort();
    let moves = moves(&manifests.snapshot, &plan);
    let text = match args.output {
        Output::Table => table(&plan, &moves),
        Output::Json => {
            let mut s =
                serde_json::to_string_pretty(&Report::of(&plan, &moves)).expect("plan serializes");
            s.push('\n');
            s
        }
        Output::Yaml => {
            serde_yaml_ng::to_string(&Report::of(&plan, &moves)).expect("plan serializes")
        }
    };
    // A closed pipe (`herald plan … | head`) is not an error worth a panic.
    let _ = std::io::stdout().write_all(text.as_bytes());
    let pending = plan.services.iter().any(|s| s.pending.is_some());
    if args.fail_on_pending && pending {
        ExitCode::from(EXIT_PENDING)
    } else if args.fail_on_move && !moves.is_empty() {
        ExitCode::from(EXIT_MOVED)
    } else {
        ExitCode::SUCCESS
    }
}

/// A Service the plan takes an address from that its
/// `status.loadBalancer.ingress` holds: what a switch from another load
/// balancer (MetalLB) must not do, listed so it is seen before applying.
#[derive(Serialize)]
struct Move<'a> {
    namespace: &'a str,
    name: &'a str,
    /// The status addresses the plan does not keep.
    from: Vec<IpAddr>,
    /// What the plan gives instead (empty when Pending).
    to: &'a [IpAddr],
}

/// Every Service whose status holds an address its plan does not.
fn moves<'a>(snapshot: &'a Snapshot, plan: &'a Plan) -> Vec<Move<'a>> {
    // By id (a plan may hold 100,000 Services); the first definition, as
    // the allocator uses.
    let mut status: HashMap<&ServiceRef, &[IpAddr]> = HashMap::new();
    for s in &snapshot.services {
        status.entry(&s.id).or_insert(&s.status_ips);
    }
    plan.services
        .iter()
        .filter_map(|o| {
            let from: Vec<IpAddr> = status
                .get(&o.service)?
                .iter()
                .filter(|ip| !o.ips.contains(ip))
                .copied()
                .collect();
            (!from.is_empty()).then_some(Move {
                namespace: &o.service.namespace,
                name: &o.service.name,
                from,
                to: &o.ips,
            })
        })
        .collect()
}

/// The JSON/YAML form of a plan: exactly the keys of DESIGN.md §7, and
/// `moves` when a Service would lose a status address.
#[derive(Serialize)]
struct Report<'a> {
    services: Vec<ServiceRow<'a>>,
    pools: Vec<PoolRow<'a>>,
    errors: Vec<ErrorRow<'a>>,
    #[serde(skip_serializing_if = "<[Move]>::is_empty")]
    moves: &'a [Move<'a>],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ServiceRow<'a> {
    namespace: &'a str,
    name: &'a str,
    status: &'static str,
    ips: &'a [IpAddr],
    pool: Option<&'a str>,
    sharing_key: Option<&'a str>,
    plugin: Option<&'a str>,
    reason: Option<String>,
    message: Option<&'a str>,
}

#[derive(Serialize)]
struct PoolRow<'a> {
    name: &'a str,
    valid: bool,
    capacity: u128,
    allocated: u128,
}

#[derive(Serialize)]
struct ErrorRow<'a> {
    kind: &'a str,
    name: &'a str,
    message: &'a str,
}

impl<'a> Report<'a> {
    fn of(plan: &'a Plan, moves: &'a [Move<'a>]) -> Report<'a> {
        Report {
            moves,
            services: plan
                .services
                .iter()
                .map(|o| ServiceRow {
                    namespace: &o.service.namespace,
                    name: &o.service.name,
                    status: if o.pending.is_some() {
                        "Pending"
                    } else {
                        "Allocated"
                    },
                    ips: &o.ips,
                    pool: o.pool.as_deref(),
                    sharing_key: o.sharing_key.as_deref(),
                    plugin: o.plugin.as_deref(),
                    reason: o.pending.as_ref().map(|p| p.reason.to_string()),
                    message: o.pending.as_ref().map(|p| p.message.as_str()),
                })
                .collect(),
            pools: plan
                .pools
                .iter()
                .map(|p| PoolRow {
                    name: &p.name,
                    valid: p.valid,
                    capacity: p.capacity,
                    allocated: p.allocated,
                })
                .collect(),
            errors: plan
                .errors
                .iter()
                .map(|e| ErrorRow {
                    kind: &e.kind,
                    name: &e.name,
                    message: &e.message,
                })
                .collect(),
        }
    }
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The table: Services (IPs, pool, the plugin that chose the address when
/// one did, status or reason), then pool usage, then problems: objects
/// ignored and plugin failures (once per plugin). The
/// PLUGIN column appears only when some plugin chose an address.
fn table(plan: &Plan, moves: &[Move]) -> String {
    let with_plugin = plan.services.iter().any(|o| o.plugin.is_some());
    let mut header = vec!["SERVICE".to_owned(), "IPS".to_owned(), "POOL".to_owned()];
    if with_plugin {
        header.push("PLUGIN".to_owned());
    }
    header.push("STATUS".to_owned());
    let mut rows = vec![header];
    for o in &plan.services {
        let ips: Vec<String> = o.ips.iter().map(IpAddr::to_string).collect();
        let status = match &o.pending {
            None => "Allocated".to_owned(),
            Some(p) => format!("Pending {}: {}", p.reason, p.message),
        };
        let mut row = vec![
            o.service.to_string(),
            if ips.is_empty() {
                "-".to_owned()
            } else {
                ips.join(",")
            },
            o.pool.clone().unwrap_or_else(|| "-".to_owned()),
        ];
        if with_plugin {
            row.push(o.plugin.clone().unwrap_or_else(|| "-".to_owned()));
        }
        row.push(status);
        rows.push(row);
    }
    let mut out = columns(&rows);
    let mut pools = vec![vec![
        "POOL".to_owned(),
        "VALID".to_owned(),
        "CAPACITY".to_owned(),
        "ALLOCATED".to_owned(),
    ]];
    for p in &plan.pools {
        pools.push(vec![
            p.name.clone(),
            if p.valid { "yes" } else { "no" }.to_owned(),
            p.capacity.to_string(),
            p.allocated.to_string(),
        ]);
    }
    out.push('\n');
    out.push_str(&columns(&pools));
    if !moves.is_empty() {
        out.push_str("\nADDRESS CHANGES (status.loadBalancer.ingress not kept)\n");
        for m in moves {
            let join = |ips: &[IpAddr]| {
                ips.iter()
                    .map(IpAddr::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let to = if m.to.is_empty() {
                "nothing (Pending)".to_owned()
            } else {
                join(m.to)
            };
            let _ = writeln!(out, "{}/{}: {} -> {to}", m.namespace, m.name, join(&m.from));
        }
    }
    if !plan.errors.is_empty() {
        out.push_str("\nPROBLEMS\n");
        for e in &plan.errors {
            let _ = writeln!(out, "{} {:?}: {}", e.kind, e.name, e.message);
        }
    }
    out
}
