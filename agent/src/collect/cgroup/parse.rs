//! The text formats of cgroup counter files, v1 and v2. Every parser makes one pass over the
//! bytes and allocates nothing: `memory.stat` alone has 40 lines, read for every container
//! on every tick.

/// A file holding one number; `max` (v2) and v1's "no limit" sentinel read as `None`.
pub fn single(text: &str) -> Option<u64> {
    let value = text.trim();
    if value == "max" {
        return None;
    }
    number(value.as_bytes()).filter(|v| *v < NO_LIMIT)
}

/// v1 writes "no limit" as PAGE_COUNTER_MAX pages (9223372036854771712 with 4 KiB pages);
/// anything this large is not a limit anyone set.
const NO_LIMIT: u64 = 1 << 62;

/// The values of `keys` in a flat keyed file (`key value` per line), in the order asked;
/// stops at the line where the last one was found.
pub fn keyed<const N: usize>(text: &str, keys: [&str; N]) -> [Option<u64>; N] {
    let mut values = [None; N];
    let mut missing = N;
    for line in text.as_bytes().split(|b| *b == b'\n') {
        let Some(space) = line.iter().position(|b| *b == b' ') else {
            continue;
        };
        let name = &line[..space];
        let Some(i) = keys.iter().position(|key| key.as_bytes() == name) else {
            continue;
        };
        if values[i].is_none() {
            values[i] = number(&line[space + 1..]);
            missing -= 1;
            if missing == 0 {
                break;
            }
        }
    }
    values
}

/// The `total=` (µs) of the `some` and the `full` line of a PSI file.
pub fn psi_totals(text: &str) -> (Option<u64>, Option<u64>) {
    let (mut some, mut full) = (None, None);
    for line in text.lines() {
        let total = || number(line.rsplit(' ').next()?.strip_prefix("total=")?.as_bytes());
        if line.starts_with("some ") {
            some = total();
        } else if line.starts_with("full ") {
            full = total();
        }
    }
    (some, full)
}

/// v1 `blkio.throttle.io_service_bytes` / `io_serviced`: per device `maj:min Op value`
/// lines; returns (read, write) summed over devices.
pub fn blkio_read_write(text: &str) -> (Option<u64>, Option<u64>) {
    let (mut read, mut write): (Option<u64>, Option<u64>) = (None, None);
    // A cgroup that has done no IO lists no device, only `Total 0`.
    let mut total = false;
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(_device), Some(op), Some(value)) = (fields.next(), fields.next(), fields.next())
        else {
            total |= line.starts_with("Total");
            continue;
        };
        let sum = match op {
            "Read" => &mut read,
            "Write" => &mut write,
            _ => continue,
        };
        if let Some(value) = number(value.as_bytes()) {
            // Saturating: the sum of garbage must not wrap to a small count.
            let total = sum.get_or_insert(0u64);
            *total = total.saturating_add(value);
        }
    }
    if total {
        (read.or(Some(0)), write.or(Some(0)))
    } else {
        (read, write)
    }
}

/// v2 `io.stat`: per device `maj:min rbytes=… wbytes=… rios=… wios=…`; returns
/// `[rbytes, wbytes, rios, wios]` summed over devices (zero before any IO: the file is empty).
pub fn io_stat(text: &str) -> [u64; 4] {
    const KEYS: [&str; 4] = ["rbytes", "wbytes", "rios", "wios"];
    let mut sums = [0u64; 4];
    for field in text.split_ascii_whitespace() {
        let Some((name, value)) = field.split_once('=') else {
            continue;
        };
        if let Some(i) = KEYS.iter().position(|key| *key == name) {
            sums[i] = sums[i].saturating_add(number(value.as_bytes()).unwrap_or(0));
        }
    }
    sums
}

/// v2 `cpu.max`: `quota period` or `max period`; returns (quota, period) in µs.
pub fn cpu_max(text: &str) -> (Option<u64>, Option<u64>) {
    let mut fields = text.split_whitespace();
    let quota = fields.next().and_then(|q| number(q.as_bytes()));
    let period = fields.next().and_then(|p| number(p.as_bytes()));
    (quota, period)
}

/// A decimal number, with trailing whitespace; `None` for anything else (`-1`, `max`,
/// empty, overflow).
fn number(text: &[u8]) -> Option<u64> {
    let digits = text.trim_ascii_end();
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |value, b| {
        let digit = b.checked_sub(b'0').filter(|d| *d < 10)?;
        value.checked_mul(10)?.checked_add(u64::from(digit))
    })
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
        assert_eq!(single("99999999999999999999999\n"), None, "overflow");
    }

    #[test]
    fn keyed_files() {
        let text = "cache 0\nrss 4096\ntotal_inactive_file 8192\ntotal_pgmajfault 3\n";
        assert_eq!(
            keyed(text, ["total_pgmajfault", "total_inactive_file"]),
            [Some(3), Some(8192)],
            "in the order asked"
        );
        assert_eq!(
            keyed(text, ["inactive_file"]),
            [None],
            "whole key names only"
        );
        assert_eq!(
            keyed(
                "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
                ["oom_kill"]
            ),
            [Some(2)]
        );
        assert_eq!(keyed("", ["a", "b"]), [None, None]);
        assert_eq!(
            keyed("a x\nb 2", ["a", "b"]),
            [None, Some(2)],
            "no last newline"
        );
    }

    #[test]
    fn pressure_totals() {
        let text = "some avg10=1.50 avg60=0.30 avg300=0.06 total=123456\n\
                    full avg10=0.00 avg60=0.00 avg300=0.00 total=789\n";
        assert_eq!(psi_totals(text), (Some(123_456), Some(789)));
        assert_eq!(psi_totals("some avg10=0.00 total=5\n"), (Some(5), None));
        assert_eq!(psi_totals(""), (None, None));
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
        assert_eq!(io_stat(text), [4106, 100, 4, 2]);
        assert_eq!(io_stat(""), [0; 4]);
        assert_eq!(cpu_max("50000 100000\n"), (Some(50_000), Some(100_000)));
        assert_eq!(cpu_max("max 100000\n"), (None, Some(100_000)));
    }

    #[test]
    fn sums_over_devices_saturate_instead_of_overflowing() {
        let max = u64::MAX;
        let io = format!("8:0 rbytes={max} wios=1\n8:16 rbytes=1 wios=1\n");
        assert_eq!(io_stat(&io), [max, 0, 0, 2]);
        let blkio = format!("8:0 Read {max}\n8:16 Read 5\n8:0 Write 1\n");
        assert_eq!(blkio_read_write(&blkio), (Some(max), Some(1)));
    }
}
