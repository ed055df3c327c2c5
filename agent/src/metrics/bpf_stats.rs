//! Run time and run count of the eBPF programs this process holds, from
//! `/proc/self/fdinfo`. The kernel counts them only while `kernel.bpf_stats_enabled` is 1.

use std::{collections::HashMap, fs, path::Path};

/// Whether the kernel counts program run time now.
pub fn enabled() -> bool {
    fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").is_ok_and(|v| v.trim() == "1")
}

/// One program's totals since it was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ProgramStats {
    pub run_seconds: f64,
    pub runs: u64,
}

/// Totals per program name, summed over the program's instances. `names` are the programs
/// this process loaded, by kernel id (`EbpfPrograms::program_names`): the ids come with the
/// totals from this process's own descriptors, so that no capability is needed.
pub fn read(names: &HashMap<u32, String>) -> HashMap<String, ProgramStats> {
    let mut by_name: HashMap<String, ProgramStats> = HashMap::new();
    for (id, stats) in by_id(Path::new("/proc/self/fdinfo")) {
        if let Some(name) = names.get(&id) {
            let total = by_name.entry(name.clone()).or_default();
            total.run_seconds += stats.run_seconds;
            total.runs += stats.runs;
        }
    }
    by_name
}

/// The programs among this process's descriptors, by kernel program id.
fn by_id(fdinfo: &Path) -> HashMap<u32, ProgramStats> {
    let Ok(entries) = fs::read_dir(fdinfo) else {
        return HashMap::new();
    };
    entries
        .flatten()
        .filter_map(|entry| parse(&fs::read_to_string(entry.path()).ok()?))
        .collect()
}

fn parse(fdinfo: &str) -> Option<(u32, ProgramStats)> {
    let field = |name: &str| {
        fdinfo
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse::<u64>().ok())
    };
    let id = u32::try_from(field("prog_id:")?).ok()?;
    Some((
        id,
        ProgramStats {
            run_seconds: field("run_time_ns:").unwrap_or(0) as f64 / 1e9,
            runs: field("run_cnt:").unwrap_or(0),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_descriptors_are_told_from_others() {
        let prog = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t2060\nprog_type:\t17\n\
                    prog_jited:\t1\nprog_tag:\tabc\nmemlock:\t4096\nprog_id:\t87\n\
                    run_time_ns:\t1500000000\nrun_cnt:\t3000\n";
        assert_eq!(
            parse(prog),
            Some((
                87,
                ProgramStats {
                    run_seconds: 1.5,
                    runs: 3000
                }
            ))
        );
        assert_eq!(parse("pos:\t0\nflags:\t02\nmnt_id:\t1\nino:\t9\n"), None);
    }
}
