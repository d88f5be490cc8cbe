//! What the benches measure with: CPU time of a process from `/proc`, the median and
//! range of a benchmark's rounds, and the tutorial's Node consumers they compare against.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Result, bail};

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

/// `host/benches/seed-node` (the tutorial's node-redis consumers) with its packages
/// installed (`npm ci`, once).
pub fn seed_node() -> Result<PathBuf> {
    let seed = crate::workspace().join("host/benches/seed-node");
    if !seed.join("node_modules/redis").is_dir() {
        let ok = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&seed)
            .status()?;
        if !ok.success() {
            bail!("npm ci in {} failed", seed.display());
        }
    }
    Ok(seed)
}
