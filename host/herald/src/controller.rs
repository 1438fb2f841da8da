//! `herald controller`: gives Services of `type: LoadBalancer` their
//! addresses in a cluster (DESIGN.md §7, issue 10). The work is
//! herald-k8s's; this module parses flags, connects and runs it until
//! SIGTERM or SIGINT, on which the leader stops writing and releases its
//! Lease so a standby takes over at once. A failure a user must fix
//! (kubeconfig, CRDs, RBAC) is one line on stderr and exit status 1.
//!
//! Replicas elect a leader on a Lease (herald-k8s's `lease` module): the
//! flags name the Lease and this replica.

use std::process::ExitCode;
use std::time::Duration;

use herald_k8s::{LeaseSettings, Settings};

/// Flags of `herald controller`. The cluster comes from `KUBECONFIG`
/// (else `~/.kube/config`) or, in a pod, the in-cluster configuration.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The loadBalancerClass Herald serves (Services with another class are
    /// not Herald's).
    #[arg(long, default_value = herald_core::config::DEFAULT_LOAD_BALANCER_CLASS, env = "HERALD_LOAD_BALANCER_CLASS")]
    load_balancer_class: String,
    /// The Lease (coordination.k8s.io/v1) whose holder acts; replicas of
    /// one controller share it.
    #[arg(long, default_value = "herald-controller", env = "HERALD_LEASE_NAME")]
    lease_name: String,
    /// The Lease's namespace (from the downward API in a pod) [default: the
    /// client configuration's namespace: in a pod its ServiceAccount's,
    /// else the kubeconfig context's, else `default`]
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// This replica's name in the Lease, unique among replicas (the pod's
    /// name, from the downward API) [default: HOSTNAME-PID]
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds a leader's term lasts without renewal: how long a standby
    /// waits after a leader died without releasing the Lease.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=3600), env = "HERALD_LEASE_DURATION")]
    lease_duration: u64,
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
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    let work = async {
        let client = herald_k8s::connect().await?;
        let settings = Settings {
            load_balancer_class: args.load_balancer_class,
            lease: LeaseSettings {
                name: args.lease_name,
                namespace: args
                    .lease_namespace
                    .unwrap_or_else(|| client.default_namespace().to_owned()),
                identity: args.identity.unwrap_or_else(identity),
                duration: Duration::from_secs(args.lease_duration),
            },
        };
        herald_k8s::run(client, settings, shutdown).await
    };
    match work.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald controller: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `HOSTNAME-PID`: unique among processes of one host, and across hosts as
/// far as their names are.
fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "herald".to_owned());
    format!("{host}-{}", std::process::id())
}
