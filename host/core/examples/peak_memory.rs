//! Peak memory of benchmark (a), a cold plan of 100,000 dual-stack Services:
//! `cargo run --release -p herald-core --example peak_memory`. Prints the
//! process's peak resident set (VmHWM) after building the input and after
//! allocating.

#[path = "../benches/inputs/mod.rs"]
mod inputs;

use herald_core::{Config, allocate};

fn peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

fn main() {
    let snapshot = inputs::cold_dual_stack(100_000);
    let input = peak_kib();
    let plan = allocate(&snapshot, &Config::default());
    let peak = peak_kib();
    let allocated = plan.services.iter().filter(|o| o.pending.is_none()).count();
    println!("services allocated: {allocated}");
    println!(
        "peak RSS after building the input: {:.1} MiB",
        input as f64 / 1024.0
    );
    println!(
        "peak RSS after allocating:         {:.1} MiB",
        peak as f64 / 1024.0
    );
}
