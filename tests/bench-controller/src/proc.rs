//! A process's CPU time and memory, from `/proc` (proc(5)).

use herald_netns::{Error, Result};

/// CPU seconds (user and system) a process has used so far.
pub fn cpu_seconds(pid: u32, ticks_per_second: f64) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| Error(format!("/proc/{pid}/stat: {e}")))?;
    // The command name (field 2) is in parentheses and may hold spaces;
    // the fields after it start at field 3 (state): utime is field 14,
    // stime field 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| Error(format!("/proc/{pid}/stat: no command name")))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| Error(format!("/proc/{pid}/stat: field {}", i + 3)))
    };
    Ok((tick(11)? + tick(12)?) as f64 / ticks_per_second)
}

/// A `/proc/PID/status` memory figure (`VmHWM`, `VmRSS`) in MiB.
pub fn memory_mib(pid: u32, field: &str) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| Error(format!("/proc/{pid}/status: {e}")))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .ok_or_else(|| Error(format!("/proc/{pid}/status: no {field}")))
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
pub fn ticks_per_second() -> Result<f64> {
    let out = herald_netns::run("getconf", &["CLK_TCK"])?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|e| Error(format!("getconf CLK_TCK: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_used_cpu_and_memory() {
        let pid = std::process::id();
        // Busy for 50 ms: at least a few clock ticks of user time.
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(50) {
            std::hint::black_box(start.elapsed());
        }
        let tps = ticks_per_second().unwrap();
        assert!(cpu_seconds(pid, tps).unwrap() > 0.0);
        let hwm = memory_mib(pid, "VmHWM").unwrap();
        let rss = memory_mib(pid, "VmRSS").unwrap();
        assert!(hwm >= rss && rss > 0.5, "VmHWM {hwm} MiB, VmRSS {rss} MiB");
    }
}
