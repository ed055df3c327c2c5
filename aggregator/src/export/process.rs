//! This process's own resident memory and CPU time, from `/proc/self`, and the standard
//! `process_*` metrics that show them.

use std::{fs, sync::Mutex};

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::{Registry, Unit},
};

/// `process_resident_memory_bytes` and `process_cpu_seconds_total`, under their usual names.
#[derive(Debug, Default)]
pub struct ProcessMetrics {
    rss: Gauge,
    cpu: Counter<f64, std::sync::atomic::AtomicU64>,
    /// The CPU total at the last refresh, to turn it into an increment.
    last_cpu: Mutex<f64>,
}

impl ProcessMetrics {
    /// Registers both metrics in `registry`'s root; `whose` names the process in their help.
    pub fn register(registry: &mut Registry, whose: &str) -> Self {
        let metrics = Self::default();
        registry.register_with_unit(
            "process_resident_memory",
            format!("Resident memory of the {whose}"),
            Unit::Bytes,
            metrics.rss.clone(),
        );
        registry.register_with_unit(
            "process_cpu",
            format!("CPU time of the {whose}, user and system"),
            Unit::Seconds,
            metrics.cpu.clone(),
        );
        metrics
    }

    /// Reads `/proc/self` again.
    pub fn refresh(&self) {
        if let Some((rss, cpu)) = usage() {
            self.rss.set(i64::try_from(rss).unwrap_or(i64::MAX));
            let mut last = self.last_cpu.lock().unwrap_or_else(|e| e.into_inner());
            self.cpu.inc_by((cpu - *last).max(0.0));
            *last = cpu;
        }
    }
}

/// Resident set size in bytes and CPU seconds (user + system) of this process.
pub fn usage() -> Option<(u64, f64)> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let stat = fs::read_to_string("/proc/self/stat").ok()?;
    let cpu = cpu_seconds(&stat, clock_ticks())?;
    Some((rss_kib.saturating_mul(1024), cpu))
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// utime + stime of a `/proc/<pid>/stat` line, in seconds. The command name may hold spaces
/// and parentheses, so fields are counted from the last `)`.
fn cpu_seconds(stat: &str, ticks: f64) -> Option<f64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    // After the name: state is field 3, utime 14 and stime 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime.saturating_add(stime) as f64 / ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_past_a_name_with_spaces_and_parentheses() {
        let stat = "42 (herd (agent) x) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(cpu_seconds(stat, 100.0), Some(3.0));
        assert_eq!(cpu_seconds("garbage", 100.0), None);
    }

    #[test]
    fn this_process_has_memory_and_cpu() {
        let (rss, cpu) = usage().unwrap();
        assert!(rss > 1024 * 1024, "{rss}");
        assert!(cpu >= 0.0);
    }
}
