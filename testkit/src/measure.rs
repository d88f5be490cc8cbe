//! What the benches measure with: CPU time of a process from `/proc`, the redis-server
//! process of a test server, and the median and range of a benchmark's rounds.

use anyhow::{Result, bail};
use sluice::redis_server::RedisServer;

/// CPU seconds (user + system) of `/proc/<pid>` (`self` for this process), from fields
/// 14 and 15 of `/proc/<pid>/stat` (proc(5)).
pub fn cpu_seconds(pid: &str) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

/// The pid of `redis`'s redis-server process (found by its port on the command line).
pub fn redis_pid(redis: &RedisServer) -> Result<u32> {
    let port = redis.port().to_string();
    for entry in std::fs::read_dir("/proc")? {
        let Ok(pid) = entry?.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline.starts_with("redis-server") && cmdline.contains(&port) {
            return Ok(pid);
        }
    }
    bail!("cannot find the redis-server process")
}

/// The median of `values` (the upper one of an even count); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
}

/// The lowest and highest of `values`.
pub fn range(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)))
}
