//! `herald controller`: gives Services of `type: LoadBalancer` their
//! addresses in a cluster (DESIGN.md §7, issue 10). The work is
//! herald-k8s's; this module parses flags, connects and runs it until
//! SIGTERM or SIGINT. A failure a user must fix (kubeconfig, CRDs, RBAC) is
//! one line on stderr and exit status 1.
//!
//! One replica only for now: there is no leader election yet.

use std::process::ExitCode;

use herald_k8s::Settings;

/// Flags of `herald controller`. The cluster comes from `KUBECONFIG`
/// (else `~/.kube/config`) or, in a pod, the in-cluster configuration.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The loadBalancerClass Herald serves (Services with another class are
    /// not Herald's).
    #[arg(long, default_value = herald_core::config::DEFAULT_LOAD_BALANCER_CLASS, env = "HERALD_LOAD_BALANCER_CLASS")]
    load_balancer_class: String,
}

/// Runs the controller until SIGTERM or SIGINT.
pub fn run(args: Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herald controller: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> ExitCode {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("herald controller: cannot listen for SIGTERM: {e}");
                return ExitCode::FAILURE;
            }
        };
    let settings = Settings {
        load_balancer_class: args.load_balancer_class,
    };
    let work = async {
        let client = herald_k8s::connect().await?;
        herald_k8s::run(client, settings).await
    };
    tokio::select! {
        result = work => match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("herald controller: {e}");
                ExitCode::FAILURE
            }
        },
        _ = terminate.recv() => ExitCode::SUCCESS,
        _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
    }
}
