//! The /proc files the agent parses: a namespace's `net/dev`, `net/snmp` and
//! `net/netstat`, `self/mountinfo`, and a process's `cgroup`. The same bytes go to each.
#![no_main]

use herd_agent::{
    collect::netns::{NetCounters, parse_dev, parse_netstat, parse_snmp},
    discovery::containers::v1_paths,
    host::mounts_from,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut counters = NetCounters::default();
    parse_dev(text, &mut counters);
    parse_snmp(text, &mut counters);
    parse_netstat(text, &mut counters);
    let _ = mounts_from(text);
    let _ = v1_paths(text);
});
