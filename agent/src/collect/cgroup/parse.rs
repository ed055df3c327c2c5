//! The text formats of cgroup counter files, v1 and v2.

/// A file holding one number; `max` (v2) and v1's "no limit" sentinel read as `None`.
pub fn single(text: &str) -> Option<u64> {
    let value = text.trim();
    if value == "max" {
        return None;
    }
    value.parse().ok().filter(|v| *v < NO_LIMIT)
}

/// v1 writes "no limit" as PAGE_COUNTER_MAX pages (9223372036854771712 with 4 KiB pages);
/// anything this large is not a limit anyone set.
const NO_LIMIT: u64 = 1 << 62;

/// The value of `key` in a flat keyed file (`key value` per line).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok()).flatten()
    })
}

/// The `total=` (µs) of the `some` or `full` line of a PSI file.
pub fn psi_total(text: &str, kind: &str) -> Option<u64> {
    text.lines()
        .find(|line| line.split_whitespace().next() == Some(kind))?
        .split_whitespace()
        .find_map(|field| field.strip_prefix("total="))?
        .parse()
        .ok()
}

/// v1 `blkio.throttle.io_service_bytes` / `io_serviced`: per device `maj:min Op value`
/// lines; returns (read, write) summed over devices.
pub fn blkio_read_write(text: &str) -> (Option<u64>, Option<u64>) {
    let (mut read, mut write) = (None, None);
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(_device), Some(op), Some(value)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Ok(value) = value.parse::<u64>() else {
            continue;
        };
        match op {
            "Read" => *read.get_or_insert(0) += value,
            "Write" => *write.get_or_insert(0) += value,
            _ => {}
        }
    }
    // A cgroup that has done no IO lists no device, only `Total 0`.
    if text.lines().any(|line| line.starts_with("Total")) {
        (read.or(Some(0)), write.or(Some(0)))
    } else {
        (read, write)
    }
}

/// v2 `io.stat`: per device `maj:min rbytes=… wbytes=… rios=… wios=…`; one key summed.
pub fn io_stat_sum(text: &str, key: &str) -> u64 {
    text.lines()
        .flat_map(str::split_whitespace)
        .filter_map(|field| field.split_once('='))
        .filter(|(name, _)| *name == key)
        .filter_map(|(_, value)| value.parse::<u64>().ok())
        .sum()
}

/// v2 `cpu.max`: `quota period` or `max period`; returns (quota, period) in µs.
pub fn cpu_max(text: &str) -> (Option<u64>, Option<u64>) {
    let mut fields = text.split_whitespace();
    let quota = fields.next().and_then(|q| q.parse().ok());
    let period = fields.next().and_then(|p| p.parse().ok());
    (quota, period)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_values_and_unlimited() {
        assert_eq!(single("104857600\n"), Some(104_857_600));
        assert_eq!(single("max\n"), None);
        assert_eq!(single("9223372036854771712\n"), None);
        assert_eq!(single("-1\n"), None);
        assert_eq!(single(""), None);
    }

    #[test]
    fn keyed_files() {
        let text = "cache 0\nrss 4096\ntotal_inactive_file 8192\ntotal_pgmajfault 3\n";
        assert_eq!(keyed(text, "total_inactive_file"), Some(8192));
        assert_eq!(keyed(text, "total_pgmajfault"), Some(3));
        assert_eq!(keyed(text, "inactive_file"), None, "whole key names only");
        assert_eq!(
            keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n", "oom_kill"),
            Some(2)
        );
    }

    #[test]
    fn pressure_totals() {
        let text = "some avg10=1.50 avg60=0.30 avg300=0.06 total=123456\n\
                    full avg10=0.00 avg60=0.00 avg300=0.00 total=789\n";
        assert_eq!(psi_total(text, "some"), Some(123_456));
        assert_eq!(psi_total(text, "full"), Some(789));
        assert_eq!(psi_total("some avg10=0.00 total=5\n", "full"), None);
    }

    #[test]
    fn blkio_sums_over_devices() {
        let text = "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:16 Read 1000\n8:16 Total 5\nTotal 13288\n";
        assert_eq!(blkio_read_write(text), (Some(5096), Some(8192)));
        assert_eq!(blkio_read_write("Total 0\n"), (Some(0), Some(0)));
        assert_eq!(blkio_read_write(""), (None, None));
    }

    #[test]
    fn io_stat_and_cpu_max() {
        let text = "8:0 rbytes=4096 wbytes=100 rios=1 wios=2 dbytes=0 dios=0\n\
                    8:16 rbytes=10 wbytes=0 rios=3 wios=0 dbytes=0 dios=0\n";
        assert_eq!(io_stat_sum(text, "rbytes"), 4106);
        assert_eq!(io_stat_sum(text, "rios"), 4);
        assert_eq!(cpu_max("50000 100000\n"), (Some(50_000), Some(100_000)));
        assert_eq!(cpu_max("max 100000\n"), (None, Some(100_000)));
    }
}
