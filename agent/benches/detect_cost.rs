//! What the detector costs the agent: the time of one window at 200 containers (40
//! Deployment domains of 5, with the agent's 36 features and configuration) and the memory
//! it holds per container, with the learned spreads on (the agent's default) and off.
//!
//! The windows are noise around a level per domain, member and feature, with a sparse
//! counter that blips now and then; in a quarter of the domains one container strays for
//! six windows of every twelve, so that findings open and close. An hour of 10 s windows
//! (360) fills every history before the last 300 windows are timed. The memory is what the
//! heap holds after the run less what it held before the detector was made, so it includes
//! the ids, names and reports' leftovers, not just the histories. Needs no root.
//!
//! `cargo bench -p herd-agent --bench detect_cost -- [--output FILE]`

use std::{
    fmt::Write as _,
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use herd_agent::{
    detect::{DetectConfig, Detector, Observation, Subject},
    features,
};

const CONTAINERS: usize = 200;
const DOMAIN_SIZE: usize = 5;
const WINDOWS: usize = 360;
const TIMED: usize = 300;

#[path = "support/heap.rs"]
mod heap;

#[global_allocator]
static ALLOCATOR: heap::Counting = heap::Counting;

/// A number in [0, 1) fixed by its arguments (splitmix64 of them).
fn noise(w: usize, c: usize, f: usize) -> f64 {
    let mut z = ((w as u64) << 40) ^ ((c as u64) << 12) ^ f as u64;
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

fn window(w: usize, features: usize) -> Vec<Observation> {
    (0..CONTAINERS)
        .map(|c| {
            let domain = c / DOMAIN_SIZE;
            let stray = domain.is_multiple_of(4) && c.is_multiple_of(DOMAIN_SIZE) && w % 12 >= 6;
            let values = (0..features)
                .map(|f| {
                    // Every seventh feature is a sparse counter.
                    if f % 7 == 6 {
                        return Some(if noise(w, c, f) < 0.03 { 3.0 } else { 0.0 });
                    }
                    let level = (1.0 + noise(0, domain, f) * 100.0) * (0.8 + 0.4 * noise(1, c, f));
                    let mut v = level * (1.0 + 0.05 * (noise(w, c, f) - 0.5));
                    if stray && f == 0 {
                        v *= 5.0;
                    }
                    Some(v)
                })
                .collect();
            Observation {
                subject: Subject {
                    entity: format!("{c:064x}"),
                    pod: Some(format!("web-{domain}-{c}")),
                    namespace: Some("bench".into()),
                    domain: format!("bench/Deployment/web-{domain}/app"),
                    node: "bench-node".into(),
                },
                values,
            }
        })
        .collect()
}

/// (median and 99th-percentile window time, heap bytes held per container, footprint).
fn measure(config: DetectConfig, names: &[String]) -> (Duration, Duration, usize, String) {
    let windows: Vec<Vec<Observation>> = (0..WINDOWS).map(|w| window(w, names.len())).collect();
    let before = heap::live_bytes();
    let mut detector = Detector::new(config, names.to_vec()).expect("the agent's configuration");
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut times = Vec::with_capacity(TIMED);
    let mut findings = 0;
    for (w, obs) in windows.iter().enumerate() {
        let at = start + Duration::from_secs(10 * w as u64);
        let began = Instant::now();
        let report = detector.observe(at, obs).expect("a valid window");
        if w >= WINDOWS - TIMED {
            times.push(began.elapsed());
        }
        findings += report.opened.len();
        drop(report);
    }
    let held = heap::live_bytes().saturating_sub(before);
    times.sort();
    let footprint = detector.footprint();
    let note = format!(
        "{findings} findings opened; history {} B per container, {} domains' sketches {} B; \
         seasonal past {} B per container without peers ({} here)",
        footprint.history_bytes_per_entity,
        footprint.domains,
        footprint.spread_bytes,
        footprint.season_bytes_per_entity,
        footprint.seasonal_entities
    );
    (
        times[times.len() / 2],
        times[times.len() * 99 / 100],
        held / CONTAINERS,
        note,
    )
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut output = None;
    while let Some(arg) = args.next() {
        if arg == "--output" {
            output = args.next().map(PathBuf::from);
        }
    }
    let names = features::names();
    let agent = features::detect_config(&names);
    let mut table = String::from(
        "| detector | window, median | window, p99 | heap per container | notes |\n|---|---|---|---|---|\n",
    );
    for (label, config) in [
        ("the agent's (learned spreads on)", agent.clone()),
        (
            "learned spreads off",
            DetectConfig {
                learned_spreads: false,
                ..agent
            },
        ),
    ] {
        let (median, p99, per, note) = measure(config, &names);
        writeln!(
            table,
            "| {label} | {:.2} ms | {:.2} ms | {:.1} KiB | {note} |",
            median.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            per as f64 / 1024.0
        )?;
    }
    print!("{table}");
    if let Some(path) = output {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, &table)?;
    }
    Ok(())
}
