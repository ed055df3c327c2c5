//! The text of every cgroup counter file a reader reads, v1 and v2: truncated, huge,
//! garbage, numbers past u64. The same bytes go to every file's parser.
#![no_main]

use herd_agent::collect::cgroup::{CgroupCounters, counter_files, fill_from};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A kept file hands its parsers UTF-8 only; other bytes are a read error.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut counters = CgroupCounters::default();
    for (controller, name) in counter_files() {
        assert!(fill_from(controller, name, text, &mut counters), "{name}");
    }
});
