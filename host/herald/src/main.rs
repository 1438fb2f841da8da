//! The `herald` command: `plan` (allocate offline from manifests), `crds`
//! (print the CRDs), `controller` (addresses for Services in a cluster),
//! `speaker` (a node's speaker), `plugin check|bench` (a policy plugin
//! before deployment) and `import metallb` (MetalLB's configuration into
//! Herald's objects). `main` only parses flags and runs a
//! command; plugins are loaded by `herald_policy::Registry` in each.

mod controller;
mod import;
mod plan;
mod plugin;
mod speaker;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Herald: LoadBalancer Services for bare-metal Kubernetes.
#[derive(Parser)]
#[command(name = "herald", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Allocate addresses offline from manifests and print the result.
    Plan(plan::Args),
    /// Print Herald's CustomResourceDefinitions as YAML.
    Crds,
    /// Give Services of type LoadBalancer their addresses in a cluster.
    Controller(controller::Args),
    /// Run a node's speaker (standalone: from a manifests directory).
    Speaker(speaker::Args),
    /// Check or measure a policy plugin (a WebAssembly component).
    Plugin {
        #[command(subcommand)]
        command: plugin::Command,
    },
    /// Translate another load balancer's configuration into Herald objects.
    Import {
        #[command(subcommand)]
        command: import::Command,
    },
}

/// Exit code for unreadable or invalid manifests (clap uses it for usage
/// errors too).
pub const EXIT_INVALID_INPUT: u8 = 2;
/// Exit code of `plan --fail-on-pending` when a Service is Pending.
pub const EXIT_PENDING: u8 = 3;
/// Exit code of `import --strict` when something was not carried over.
pub const EXIT_NOT_CARRIED_OVER: u8 = 4;
/// Exit code of `plan --fail-on-move` when a Service would lose a status
/// address.
pub const EXIT_MOVED: u8 = 5;

/// The log filter when `HERALD_LOG` is unset. kube-client logs every failed
/// request at ERROR from inside its client; Herald reports those failures
/// itself, one line each, so kube-client's copy is left out.
const DEFAULT_LOG: &str = "info,kube_client::client::builder=off";

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HERALD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match cli.command {
        Command::Plan(args) => plan::run(&args),
        Command::Controller(args) => controller::run(args),
        Command::Speaker(args) => speaker::run(args),
        Command::Plugin { command } => plugin::run(&command),
        Command::Import { command } => import::run(&command),
        Command::Crds => {
            print!("{}", herald_api::crds_yaml());
            ExitCode::SUCCESS
        }
    }
}
