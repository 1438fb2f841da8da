//! The `herald` command: `plan` (allocate offline from manifests) and
//! `crds` (print the CRDs). `main` only parses flags and runs a command.

mod plan;

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
}

/// Exit code for unreadable or invalid manifests (clap uses it for usage
/// errors too).
pub const EXIT_INVALID_INPUT: u8 = 2;
/// Exit code of `plan --fail-on-pending` when a Service is Pending.
pub const EXIT_PENDING: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Plan(args) => plan::run(&args),
        Command::Crds => {
            print!("{}", herald_api::crds_yaml());
            ExitCode::SUCCESS
        }
    }
}
