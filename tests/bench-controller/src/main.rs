//! `herald-bench-controller`: `herald controller` beside MetalLB's
//! controller on one real kube-apiserver (issue 10, Benchmarks).
//!
//! One control plane (tests/control-plane) serves every round. Both
//! controllers are installed with their own CRDs and an equivalent pool (a
//! /112 of 2001:db8::/32 each: 10,000 Services need IPv6) and serve their
//! own `loadBalancerClass`, so neither ever touches the other's Services.
//! They run one after another, never at once: each round has the two cores
//! of the machine to itself, and the order alternates between runs.
//!
//! A round ([`round::run`]): start the controller, wait until it gives a
//! warm-up Service its address (its stores are filled), create N Services
//! as fast as the API server takes them (many requests in flight), wait
//! until every one shows an address in its status, then create `extra`
//! more one at a time, each after the last got its address. Timestamps
//! come from one watch of the round's namespace; a Service's creation is
//! the earlier of its create call returning and the watch showing it.
//! Then the controller is stopped and the round's objects deleted, so the
//! next round starts on an empty cluster.
//!
//! Prints one line per round on stderr as it goes, and the table for
//! BENCHMARKS.md (medians over the runs) on stdout.

mod proc;
mod round;
mod setup;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use herald_control_plane::ControlPlane;

use crate::round::Report;
use crate::setup::Contender;

/// Flags.
#[derive(Parser, Debug)]
#[command(about = "herald controller beside MetalLB's controller on one kube-apiserver")]
struct Args {
    /// The `herald` binary (a release build).
    #[arg(long, env = "HERALD_BIN")]
    herald: PathBuf,
    /// The directory scripts/metallb-build.sh prints (`metallb-controller`
    /// in it, MetalLB's CRDs in `../crds`); without it, Herald alone.
    #[arg(long, env = "METALLB_BIN")]
    metallb: Option<PathBuf>,
    /// Numbers of Services created at once, one round per size and
    /// controller and run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1000,10000",
        env = "BENCH_SIZES"
    )]
    sizes: Vec<usize>,
    /// Runs per size and controller (medians are taken over them).
    #[arg(long, default_value_t = 1, env = "BENCH_RUNS")]
    runs: usize,
    /// Services created one at a time after the N, each after the last got
    /// its address.
    #[arg(long, default_value_t = 100, env = "BENCH_EXTRA")]
    extra: usize,
    /// Create requests in flight at once.
    #[arg(long, default_value_t = 32, env = "BENCH_CONCURRENCY")]
    concurrency: usize,
    /// Where the controllers' logs go (one file per round); by default a
    /// temporary directory, removed at the end.
    #[arg(long, env = "BENCH_LOGS")]
    logs: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match bench(&args) {
        Ok(reports) => {
            print!("{}", round::table(&reports));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("herald-bench-controller: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: &Args) -> herald_netns::Result<Vec<Report>> {
    let cp = ControlPlane::start()?;
    eprintln!("control plane at {}", cp.server());
    let mut contenders = vec![Contender::herald(&args.herald)];
    if let Some(dir) = &args.metallb {
        contenders.push(Contender::metallb(dir));
    }
    for c in &contenders {
        c.install(&cp)?;
    }
    let scratch = herald_netns::TempDir::new("hbench")?;
    let logs = args
        .logs
        .clone()
        .unwrap_or_else(|| scratch.path().to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| herald_netns::Error(format!("runtime: {e}")))?;
    runtime.block_on(async {
        let client = setup::client(&cp.kubeconfig()).await?;
        let mut reports = Vec::new();
        for &n in &args.sizes {
            for run in 0..args.runs {
                // Alternate who goes first, so neither always meets a
                // fresher (or a more compacted) etcd.
                let mut order: Vec<&Contender> = contenders.iter().collect();
                if run % 2 == 1 {
                    order.reverse();
                }
                for c in order {
                    let settings = round::Settings {
                        n,
                        run,
                        extra: args.extra,
                        concurrency: args.concurrency,
                        bound: Duration::from_secs(120) + Duration::from_millis(50) * n as u32,
                        logs: logs.clone(),
                    };
                    let report = round::run(&cp, &client, c, &settings).await?;
                    eprintln!("{}", report.line());
                    reports.push(report);
                }
            }
        }
        Ok(reports)
    })
}
