//! Network counters of a container's network namespace, read through one of its processes
//! (`/proc/<pid>/net/…` shows the namespace of `<pid>`). Containers of one pod share a
//! namespace, so each namespace is read once per tick and its counters given to each of its
//! containers.
//!
//! Which namespace a process is in is not looked up on every read: the lookup costs more
//! than reading a namespace shared by a few containers, and a process changes namespace only
//! through `setns` or `unshare`, which a container's process does while the runtime makes it
//! (joining the pod's namespace), not later. So it is looked up when the process is new to
//! the collector, again on the next read, and then after 2, 4, 8, … reads, at most
//! [`LOOKUP_EVERY_MAX`] apart.

use std::{
    collections::{HashMap, HashSet},
    fs,
    path::{Path, PathBuf},
};

use tracing::debug;

use crate::{collect::kept_file::KeptFile, discovery::containers::ContainerTable};

/// Network counters of one namespace, totals. Interfaces are summed, loopback left out:
/// traffic on `lo` never leaves the pod.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetCounters {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_drops: u64,
    pub tx_drops: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    /// TCP segments sent again.
    pub tcp_retransmits: u64,
    /// TCP resets sent.
    pub tcp_resets_sent: u64,
    /// Connections reset while established.
    pub tcp_established_resets: u64,
    /// Connection attempts that failed.
    pub tcp_failed_connects: u64,
    /// Connections dropped because a listen queue was full.
    pub tcp_listen_overflows: u64,
    pub tcp_listen_drops: u64,
    /// UDP datagrams dropped for want of receive buffer.
    pub udp_receive_buffer_errors: u64,
}

/// Sums `/proc/<pid>/net/dev` over every interface but `lo`.
pub fn parse_dev(text: &str, counters: &mut NetCounters) {
    for line in text.lines().skip(2) {
        let Some((name, values)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let mut v = [0u64; 16];
        let mut fields = 0;
        for (slot, field) in v.iter_mut().zip(values.split_ascii_whitespace()) {
            *slot = field.parse().unwrap_or(0);
            fields += 1;
        }
        if fields < v.len() {
            continue;
        }
        counters.rx_bytes += v[0];
        counters.rx_packets += v[1];
        counters.rx_errors += v[2];
        counters.rx_drops += v[3];
        counters.tx_bytes += v[8];
        counters.tx_packets += v[9];
        counters.tx_errors += v[10];
        counters.tx_drops += v[11];
    }
}

/// Looks up `Prefix: Name` in the header/value line pairs of `snmp` and `netstat`.
fn paired(text: &str, prefix: &str, name: &str) -> Option<u64> {
    let mut lines = text.lines();
    while let Some(header) = lines.next() {
        let values = lines.next()?;
        let Some(names) = header.strip_prefix(prefix) else {
            continue;
        };
        let index = names.split_whitespace().position(|n| n == name)?;
        return values
            .strip_prefix(prefix)?
            .split_whitespace()
            .nth(index)?
            .parse()
            .ok();
    }
    None
}

/// TCP and UDP counters from `/proc/<pid>/net/snmp`.
pub fn parse_snmp(text: &str, counters: &mut NetCounters) {
    let tcp = |name| paired(text, "Tcp:", name).unwrap_or(0);
    counters.tcp_retransmits = tcp("RetransSegs");
    counters.tcp_resets_sent = tcp("OutRsts");
    counters.tcp_established_resets = tcp("EstabResets");
    counters.tcp_failed_connects = tcp("AttemptFails");
    counters.udp_receive_buffer_errors = paired(text, "Udp:", "RcvbufErrors").unwrap_or(0);
}

/// Listen queue counters from `/proc/<pid>/net/netstat`.
pub fn parse_netstat(text: &str, counters: &mut NetCounters) {
    counters.tcp_listen_overflows = paired(text, "TcpExt:", "ListenOverflows").unwrap_or(0);
    counters.tcp_listen_drops = paired(text, "TcpExt:", "ListenDrops").unwrap_or(0);
}

/// The three files of one namespace, open through one of its processes.
#[derive(Debug)]
struct NamespaceFiles {
    dev: KeptFile,
    snmp: KeptFile,
    netstat: KeptFile,
}

impl NamespaceFiles {
    fn open(proc: &Path, pid: u32) -> std::io::Result<Self> {
        let net = proc.join(pid.to_string()).join("net");
        Ok(Self {
            dev: KeptFile::open(net.join("dev"))?,
            snmp: KeptFile::open(net.join("snmp"))?,
            netstat: KeptFile::open(net.join("netstat"))?,
        })
    }

    fn read(&self, buf: &mut Vec<u8>) -> std::io::Result<NetCounters> {
        let mut counters = NetCounters::default();
        parse_dev(self.dev.read(buf)?, &mut counters);
        parse_snmp(self.snmp.read(buf)?, &mut counters);
        parse_netstat(self.netstat.read(buf)?, &mut counters);
        Ok(counters)
    }
}

/// The most reads between two lookups of a process's namespace.
const LOOKUP_EVERY_MAX: u32 = 64;

/// A process's namespace as last looked up.
#[derive(Debug)]
struct Lookup {
    ns: u64,
    /// Reads that used it so far, and how many may before it is looked up again.
    used: u32,
    every: u32,
}

/// Network counters for every container with a known process, by container id.
#[derive(Debug)]
pub struct NetnsCollector {
    proc: PathBuf,
    /// By namespace inode. A namespace whose files fail is reopened through another pid.
    namespaces: HashMap<u64, NamespaceFiles>,
    /// The namespace of each container process, by pid.
    namespace_of: HashMap<u32, Lookup>,
    buf: Vec<u8>,
}

impl NetnsCollector {
    pub fn new(proc: impl Into<PathBuf>) -> Self {
        Self {
            proc: proc.into(),
            namespaces: HashMap::new(),
            namespace_of: HashMap::new(),
            buf: Vec::new(),
        }
    }

    pub fn open_namespaces(&self) -> usize {
        self.namespaces.len()
    }

    pub fn collect(&mut self, table: &ContainerTable) -> HashMap<String, NetCounters> {
        let mut by_namespace: HashMap<u64, Option<NetCounters>> = HashMap::new();
        let mut out = HashMap::new();
        let mut pids = HashSet::new();
        for container in table.containers() {
            let Some(pid) = container.pid else { continue };
            pids.insert(pid);
            let Some(ns) = self.namespace_of(pid) else {
                continue;
            };
            let counters = *by_namespace.entry(ns).or_insert_with(|| {
                read_namespace(&mut self.namespaces, &self.proc, ns, pid, &mut self.buf)
            });
            if let Some(counters) = counters {
                out.insert(container.id.clone(), counters);
            }
        }
        self.namespace_of.retain(|pid, _| pids.contains(pid));
        self.namespaces
            .retain(|ns, _| by_namespace.contains_key(ns));
        out
    }

    /// The namespace inode of `pid`, looked up again after ever more reads.
    fn namespace_of(&mut self, pid: u32) -> Option<u64> {
        let every = match self.namespace_of.get_mut(&pid) {
            Some(lookup) if lookup.used < lookup.every => {
                lookup.used += 1;
                return Some(lookup.ns);
            }
            Some(lookup) => (lookup.every * 2).min(LOOKUP_EVERY_MAX),
            None => 1,
        };
        let Some(ns) = namespace_inode(&self.proc, pid) else {
            self.namespace_of.remove(&pid);
            return None;
        };
        self.namespace_of.insert(pid, Lookup { ns, used: 1, every });
        Some(ns)
    }
}

/// The inode of the network namespace of `pid`, from the link `/proc/<pid>/ns/net`
/// (`net:[<inode>]`): reading the link costs half as much as a `stat` through it.
fn namespace_inode(proc: &Path, pid: u32) -> Option<u64> {
    let link = fs::read_link(proc.join(pid.to_string()).join("ns/net")).ok()?;
    link.to_str()?
        .strip_prefix("net:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

fn read_namespace(
    namespaces: &mut HashMap<u64, NamespaceFiles>,
    proc: &Path,
    ns: u64,
    pid: u32,
    buf: &mut Vec<u8>,
) -> Option<NetCounters> {
    if let Some(files) = namespaces.get(&ns)
        && let Ok(counters) = files.read(buf)
    {
        return Some(counters);
    }
    // First sight of the namespace, or the process its files were opened through is gone.
    match NamespaceFiles::open(proc, pid).and_then(|files| {
        let counters = files.read(buf)?;
        namespaces.insert(ns, files);
        Ok(counters)
    }) {
        Ok(counters) => Some(counters),
        Err(err) => {
            debug!(pid, %err, "cannot read the network namespace counters");
            namespaces.remove(&ns);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    3193      29    0    0    0     0          0         0     3193      29    0    0    0     0       0          0
  eth0: 1000   10    1    2    0     0          0         0   2000   20    3    4    0     0       0          0
  eth1: 5   1    0    0    0     0          0         0   7   1    0    0    0     0       0          0
";

    const SNMP: &str = "Ip: Forwarding DefaultTTL
Ip: 1 64
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors
Tcp: 1 200 120000 -1 81 2 5 6 0 14431 11061 7 0 8 0
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 161 0 0 162 9 0 0 0 0
";

    const NETSTAT: &str = "TcpExt: SyncookiesSent ListenOverflows ListenDrops
TcpExt: 0 11 12
IpExt: InNoRoutes
IpExt: 0
";

    #[test]
    fn interfaces_are_summed_without_loopback() {
        let mut c = NetCounters::default();
        parse_dev(DEV, &mut c);
        assert_eq!((c.rx_bytes, c.tx_bytes), (1005, 2007));
        assert_eq!((c.rx_packets, c.tx_packets), (11, 21));
        assert_eq!(
            (c.rx_errors, c.rx_drops, c.tx_errors, c.tx_drops),
            (1, 2, 3, 4)
        );
    }

    #[test]
    fn tcp_and_udp_errors_by_name() {
        let mut c = NetCounters::default();
        parse_snmp(SNMP, &mut c);
        parse_netstat(NETSTAT, &mut c);
        assert_eq!(c.tcp_failed_connects, 5);
        assert_eq!(c.tcp_established_resets, 6);
        assert_eq!(c.tcp_retransmits, 7);
        assert_eq!(c.tcp_resets_sent, 8);
        assert_eq!(c.udp_receive_buffer_errors, 9);
        assert_eq!((c.tcp_listen_overflows, c.tcp_listen_drops), (11, 12));
    }

    #[test]
    fn namespaces_are_read_once_and_closed_when_their_containers_go() {
        use crate::discovery::{containers::ContainerTable, domain::LabelOwners};
        use std::time::{Duration, SystemTime};

        // Two containers whose process is this test: one namespace between them.
        let root = tempfile::tempdir().unwrap();
        let mut table = ContainerTable::new("/proc", root.path(), Duration::ZERO);
        let ids = ["a".repeat(64), "b".repeat(64)];
        let paths: Vec<String> = ids.iter().map(|id| format!("/docker/{id}")).collect();
        for path in &paths {
            let dir = root.path().join(path.trim_start_matches('/'));
            fs::create_dir_all(&dir).unwrap();
            fs::write(
                dir.join("cgroup.procs"),
                format!("{}\n", std::process::id()),
            )
            .unwrap();
        }
        let cgroups = paths
            .iter()
            .enumerate()
            .map(|(i, p)| (i as u64, Path::new(p.as_str())));
        table.update(cgroups, None, &LabelOwners, SystemTime::now());

        let mut collector = NetnsCollector::new("/proc");
        let counters = collector.collect(&table);
        assert_eq!(counters.len(), 2);
        assert_eq!(
            counters[&ids[0]], counters[&ids[1]],
            "same namespace, same counters"
        );
        assert_eq!(collector.open_namespaces(), 1);

        table.update([], None, &LabelOwners, SystemTime::now());
        assert!(collector.collect(&table).is_empty());
        assert_eq!(
            collector.open_namespaces(),
            0,
            "files of gone namespaces are closed"
        );
    }

    #[test]
    fn a_process_namespace_is_looked_up_again_after_ever_more_reads() {
        use crate::discovery::{containers::ContainerTable, domain::LabelOwners};
        use std::time::{Duration, SystemTime};

        // A fake /proc with one process, 42, whose namespace link and files the test sets.
        let root = tempfile::tempdir().unwrap();
        let proc = root.path().join("proc");
        let process = proc.join("42");
        fs::create_dir_all(process.join("ns")).unwrap();
        let enter = |ns: u64, rx_bytes: u64| {
            // New files, not rewritten ones: files kept open keep showing the old namespace.
            let net = process.join("net");
            let _ = fs::remove_dir_all(&net);
            fs::create_dir_all(&net).unwrap();
            let dev = DEV.replace("eth0: 1000", &format!("eth0: {rx_bytes}"));
            fs::write(net.join("dev"), dev).unwrap();
            fs::write(net.join("snmp"), SNMP).unwrap();
            fs::write(net.join("netstat"), NETSTAT).unwrap();
            let link = process.join("ns/net");
            let _ = fs::remove_file(&link);
            std::os::unix::fs::symlink(format!("net:[{ns}]"), link).unwrap();
        };
        let cgroup = root.path().join("cgroup");
        let path = format!("/docker/{}", "a".repeat(64));
        let dir = cgroup.join(path.trim_start_matches('/'));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("cgroup.procs"), "42\n").unwrap();
        let mut table = ContainerTable::new(&proc, &cgroup, Duration::ZERO);
        table.update(
            [(1, Path::new(path.as_str()))],
            None,
            &LabelOwners,
            SystemTime::now(),
        );
        let id = "a".repeat(64);
        let mut collector = NetnsCollector::new(&proc);
        let mut rx = || collector.collect(&table)[&id].rx_bytes;

        enter(1, 100);
        assert_eq!(rx(), 105);
        // The runtime makes the process join its pod's namespace: seen on the next read.
        enter(2, 200);
        assert_eq!(rx(), 205);
        // Then after 2 reads, 4, …
        enter(3, 300);
        assert_eq!(rx(), 205);
        assert_eq!(rx(), 305);
        enter(4, 400);
        for _ in 0..3 {
            assert_eq!(rx(), 305, "the namespace as last looked up");
        }
        assert_eq!(rx(), 405);
        assert_eq!(collector.open_namespaces(), 1, "the old ones are closed");
    }

    #[test]
    fn this_process_namespace_reads_through_kept_files() {
        let files = NamespaceFiles::open(Path::new("/proc"), std::process::id()).unwrap();
        let mut buf = Vec::new();
        let first = files.read(&mut buf).unwrap();
        let second = files.read(&mut buf).unwrap();
        assert!(second.tx_packets >= first.tx_packets);
    }
}
