//! `herald-control-plane`: the test control plane for a person — starts
//! etcd and kube-apiserver as the tests do, prints how to reach them, and
//! stops them on Enter or Ctrl-C (they die with this process).

use std::io::BufRead;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cp = match herald_control_plane::ControlPlane::start() {
        Ok(cp) => cp,
        Err(e) => {
            eprintln!("herald-control-plane: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bin = herald_control_plane::binaries().unwrap_or_default();
    println!("kube-apiserver: {}", cp.server());
    println!("kubeconfig:     {}", cp.kubeconfig().display());
    println!();
    println!("In another shell:");
    println!("  export KUBECONFIG={}", cp.kubeconfig().display());
    println!("  export PATH={}:$PATH", bin.display());
    println!("  kubectl get --raw /readyz");
    println!();
    println!("Press Enter (or Ctrl-C) to stop it.");
    let _ = std::io::stdin().lock().lines().next();
    ExitCode::SUCCESS
}
