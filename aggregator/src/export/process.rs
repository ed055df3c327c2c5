//! This process's own resident memory and CPU time, from `/proc/self`, and the standard
//! `process_*` metrics that show them.

use std::sync::Mutex;

use procfs::process::Process;

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

/// Resident set size in bytes and CPU seconds (user + system) of this process, read by
/// procfs from `/proc/self/status` and `/proc/self/stat`.
pub fn usage() -> Option<(u64, f64)> {
    let me = Process::myself().ok()?;
    let rss_kib = me.status().ok()?.vmrss?;
    let stat = me.stat().ok()?;
    let ticks = procfs::ticks_per_second().max(1) as f64;
    let cpu = stat.utime.saturating_add(stat.stime) as f64 / ticks;
    Some((rss_kib.saturating_mul(1024), cpu))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_cpu() {
        let (rss, cpu) = usage().unwrap();
        assert!(rss > 1024 * 1024, "{rss}");
        assert!(cpu >= 0.0);
    }
}
