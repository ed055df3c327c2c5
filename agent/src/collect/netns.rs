//! Network counters of a container's network namespace, read through one of its processes
//! (`/proc/<pid>/net/…` shows the namespace of `<pid>`). Containers of one pod share a
//! namespace, so each namespace is read once per tick and its counters given to each of its
//! containers.
//!
//! A namespace's files are read only when their counters can have moved, as the cgroup
//! files are:
//! - `net/dev` on every read;
//! - `net/snmp` (TCP and UDP) when a packet crossed an interface of the namespace, loopback
//!   included, and every [`SLOW_EVERY`] reads, for what TCP counts without a packet: a
//!   connect that gives up after its last SYN, a connection that times out. Those are seen
//!   at most that many reads late, never lost: the counters are totals;
//! - `net/netstat` (listen queues; the costliest of the three, as the kernel sums a few
//!   hundred per-CPU counters to print it) when TCP received a segment (`Tcp: InSegs`
//!   moved): a listen queue drops only a segment that arrived.
//!
//! The kernel counts a packet on the interface, then in TCP, then in the listen queue, so a
//! read can fall between them; each gate therefore stays open for one more read after the
//! counter behind it moved.
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

/// Sets the interface counters of `counters` from `/proc/<pid>/net/dev`: every interface
/// but `lo` summed. Returns the packets, dropped ones included, on every interface, `lo`
/// included: what moves whenever TCP or UDP can have counted anything.
pub fn parse_dev(text: &str, counters: &mut NetCounters) -> u64 {
    let mut sums = [0u64; 16];
    let mut packets = 0u64;
    for line in text.lines().skip(2) {
        let Some((name, values)) = line.split_once(':') else {
            continue;
        };
        let mut v = [0u64; 16];
        let mut fields = 0;
        for (slot, field) in v.iter_mut().zip(values.split_ascii_whitespace()) {
            *slot = field.parse().unwrap_or(0);
            fields += 1;
        }
        if fields < v.len() {
            continue;
        }
        // A gate compared for change only: wrapping keeps it moving with the counters.
        packets = [v[1], v[3], v[9], v[11]]
            .into_iter()
            .fold(packets, u64::wrapping_add);
        if name.trim() == "lo" {
            continue;
        }
        for (sum, value) in sums.iter_mut().zip(v) {
            *sum = sum.saturating_add(value);
        }
    }
    counters.rx_bytes = sums[0];
    counters.rx_packets = sums[1];
    counters.rx_errors = sums[2];
    counters.rx_drops = sums[3];
    counters.tx_bytes = sums[8];
    counters.tx_packets = sums[9];
    counters.tx_errors = sums[10];
    counters.tx_drops = sums[11];
    packets
}

/// Looks up `Prefix: Name` in the header/value line pairs of `snmp` and `netstat`.
fn snmp_value(text: &str, prefix: &str, name: &str) -> Option<u64> {
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

/// TCP and UDP counters from `/proc/<pid>/net/snmp`. Returns the TCP segments received
/// (`InSegs`), which move whenever the listen queue counters of `netstat` can have.
pub fn parse_snmp(text: &str, counters: &mut NetCounters) -> u64 {
    let tcp = |name| snmp_value(text, "Tcp:", name).unwrap_or(0);
    counters.tcp_retransmits = tcp("RetransSegs");
    counters.tcp_resets_sent = tcp("OutRsts");
    counters.tcp_established_resets = tcp("EstabResets");
    counters.tcp_failed_connects = tcp("AttemptFails");
    counters.udp_receive_buffer_errors = snmp_value(text, "Udp:", "RcvbufErrors").unwrap_or(0);
    tcp("InSegs")
}

/// Listen queue counters from `/proc/<pid>/net/netstat`.
pub fn parse_netstat(text: &str, counters: &mut NetCounters) {
    counters.tcp_listen_overflows = snmp_value(text, "TcpExt:", "ListenOverflows").unwrap_or(0);
    counters.tcp_listen_drops = snmp_value(text, "TcpExt:", "ListenDrops").unwrap_or(0);
}

/// A namespace's `snmp` is read at least once in this many reads.
const SLOW_EVERY: u32 = 6;

/// The three files of one namespace, open through one of its processes, and what they
/// held when last read.
#[derive(Debug)]
struct NamespaceFiles {
    dev: KeptFile,
    snmp: KeptFile,
    netstat: KeptFile,
    /// `None` until every file has been read once.
    last: Option<LastRead>,
    reads: u32,
}

#[derive(Clone, Copy, Debug)]
struct LastRead {
    counters: NetCounters,
    /// The gates: packets on every interface (from `dev`), TCP segments received (`snmp`),
    /// and whether each moved at that read.
    packets: u64,
    tcp_in_segs: u64,
    packets_moved: bool,
    tcp_in_segs_moved: bool,
}

impl NamespaceFiles {
    fn open(proc: &Path, pid: u32) -> std::io::Result<Self> {
        let net = proc.join(pid.to_string()).join("net");
        Ok(Self {
            dev: KeptFile::open(net.join("dev"))?,
            snmp: KeptFile::open(net.join("snmp"))?,
            netstat: KeptFile::open(net.join("netstat"))?,
            last: None,
            reads: 0,
        })
    }

    /// Reads the files that are due (see the module docs); returns the counters and how
    /// many files were read. With `ungated`, every file is due.
    fn read(&mut self, buf: &mut Vec<u8>, ungated: bool) -> std::io::Result<(NetCounters, u64)> {
        let slow = ungated || self.reads.is_multiple_of(SLOW_EVERY);
        let mut counters = self.last.map(|last| last.counters).unwrap_or_default();
        let packets = parse_dev(self.dev.read(buf)?, &mut counters);
        let mut files = 1;
        let packets_moved = self.last.is_some_and(|last| packets != last.packets);
        let snmp_due = slow || packets_moved || self.last.is_none_or(|last| last.packets_moved);
        let (tcp_in_segs, tcp_in_segs_moved) = match self.last {
            Some(last) if !snmp_due => (last.tcp_in_segs, false),
            last => {
                let segs = parse_snmp(self.snmp.read(buf)?, &mut counters);
                files += 1;
                (segs, last.is_some_and(|last| segs != last.tcp_in_segs))
            }
        };
        let netstat_due =
            ungated || tcp_in_segs_moved || self.last.is_none_or(|last| last.tcp_in_segs_moved);
        if netstat_due {
            parse_netstat(self.netstat.read(buf)?, &mut counters);
            files += 1;
        }
        self.reads = self.reads.wrapping_add(1);
        self.last = Some(LastRead {
            counters,
            packets,
            tcp_in_segs,
            packets_moved,
            tcp_in_segs_moved,
        });
        Ok((counters, files))
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
    /// The namespace of each container process, by pid and the container's cgroup id: a
    /// pid that goes to a process of another container is looked up afresh for it.
    namespace_of: HashMap<(u32, u64), Lookup>,
    buf: Vec<u8>,
    ungated: bool,
    files_read: u64,
}

impl NetnsCollector {
    pub fn new(proc: impl Into<PathBuf>) -> Self {
        Self {
            proc: proc.into(),
            namespaces: HashMap::new(),
            namespace_of: HashMap::new(),
            buf: Vec::new(),
            ungated: false,
            files_read: 0,
        }
    }

    /// Reads every file of every namespace on every tick, as if each had traffic: the
    /// worst case, for benchmarks.
    pub fn ungate(&mut self) {
        self.ungated = true;
    }

    pub fn open_namespaces(&self) -> usize {
        self.namespaces.len()
    }

    /// Namespace files read so far.
    pub fn files_read(&self) -> u64 {
        self.files_read
    }

    pub fn collect(&mut self, table: &ContainerTable) -> HashMap<String, NetCounters> {
        let mut by_namespace: HashMap<u64, Option<NetCounters>> = HashMap::new();
        let mut out = HashMap::new();
        let mut pids = HashSet::new();
        for container in table.containers() {
            let Some(pid) = container.pid else { continue };
            let key = (pid, container.cgroup_id);
            pids.insert(key);
            let Some(ns) = self.namespace_of(key, || table.holds(container, pid)) else {
                continue;
            };
            let counters = *by_namespace.entry(ns).or_insert_with(|| {
                let read = read_namespace(
                    &mut self.namespaces,
                    &self.proc,
                    (ns, pid),
                    &mut self.buf,
                    self.ungated,
                );
                read.map(|(counters, files)| {
                    self.files_read += files;
                    counters
                })
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

    /// The namespace inode of a container's process (`key`: its pid and the container's
    /// cgroup id), looked up again after ever more reads. At each lookup the process must
    /// still be the container's (`holds`): a pid that exited and went to a process of
    /// another container between two discovery polls gives no counters until discovery
    /// finds the container's process again, rather than the other container's.
    fn namespace_of(&mut self, key: (u32, u64), holds: impl FnOnce() -> bool) -> Option<u64> {
        let every = match self.namespace_of.get_mut(&key) {
            Some(lookup) if lookup.used < lookup.every => {
                lookup.used += 1;
                return Some(lookup.ns);
            }
            Some(lookup) => (lookup.every * 2).min(LOOKUP_EVERY_MAX),
            None => 1,
        };
        let ns = namespace_inode(&self.proc, key.0).filter(|_| holds());
        let Some(ns) = ns else {
            self.namespace_of.remove(&key);
            return None;
        };
        self.namespace_of.insert(key, Lookup { ns, used: 1, every });
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

/// The counters of namespace `ns`, read through the files kept for it or else through
/// `pid`, and how many files that read.
fn read_namespace(
    namespaces: &mut HashMap<u64, NamespaceFiles>,
    proc: &Path,
    (ns, pid): (u64, u32),
    buf: &mut Vec<u8>,
    ungated: bool,
) -> Option<(NetCounters, u64)> {
    if let Some(files) = namespaces.get_mut(&ns)
        && let Ok(read) = files.read(buf, ungated)
    {
        return Some(read);
    }
    // First sight of the namespace, or the process its files were opened through is gone.
    match NamespaceFiles::open(proc, pid).and_then(|mut files| {
        let read = files.read(buf, ungated)?;
        namespaces.insert(ns, files);
        Ok(read)
    }) {
        Ok(read) => Some(read),
        Err(err) => {
            debug!(pid, %err, "cannot read the network namespace counters");
            namespaces.remove(&ns);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::discovery::domain::LabelOwners;

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

    /// A fake /proc with one process, 42, the process of one container, whose namespace
    /// link and files a test sets.
    struct FakeProcess {
        root: tempfile::TempDir,
        table: ContainerTable,
    }

    impl FakeProcess {
        fn new() -> Self {
            let root = tempfile::tempdir().unwrap();
            let proc = root.path().join("proc");
            fs::create_dir_all(proc.join("42/ns")).unwrap();
            let cgroup = root.path().join("cgroup");
            let path = format!("/docker/{}", ID.repeat(64));
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
            Self { root, table }
        }

        fn proc(&self) -> PathBuf {
            self.root.path().join("proc")
        }

        /// Makes the process join namespace `ns`, with new files: files kept open keep
        /// showing the old namespace.
        fn enter(&self, ns: u64) {
            let process = self.proc().join("42");
            let _ = fs::remove_dir_all(process.join("net"));
            fs::create_dir_all(process.join("net")).unwrap();
            self.write("dev", DEV);
            self.write("snmp", SNMP);
            self.write("netstat", NETSTAT);
            let link = process.join("ns/net");
            let _ = fs::remove_file(&link);
            std::os::unix::fs::symlink(format!("net:[{ns}]"), link).unwrap();
        }

        /// Rewrites one of the namespace's files in place, as the kernel's counters move.
        fn write(&self, name: &str, text: &str) {
            fs::write(self.proc().join("42/net").join(name), text).unwrap();
        }

        fn read(&self, collector: &mut NetnsCollector) -> NetCounters {
            collector.collect(&self.table)[&ID.repeat(64)]
        }
    }

    const ID: &str = "a";

    #[test]
    fn a_pid_given_to_another_container_never_shows_its_counters_for_the_first() {
        // Process 42 is container A's, in namespace 1; it exits, and its number goes to a
        // process of container B, in namespace 2, before discovery polls again.
        let process = FakeProcess::new();
        let mut collector = NetnsCollector::new(process.proc());
        process.enter(1);
        let own = process.read(&mut collector).rx_bytes;
        assert_eq!(own, 1005);

        let cgroup = process.root.path().join("cgroup/docker");
        let a = cgroup.join(ID.repeat(64));
        let b_id = "b".repeat(64);
        fs::create_dir_all(cgroup.join(&b_id)).unwrap();
        fs::write(a.join("cgroup.procs"), "").unwrap();
        fs::write(cgroup.join(&b_id).join("cgroup.procs"), "42\n").unwrap();
        process.enter(2);
        process.write("dev", &DEV.replace("eth0: 1000", "eth0: 2000"));
        for tick in 0..40 {
            let counters = collector.collect(&process.table);
            if let Some(a) = counters.get(&ID.repeat(64)) {
                assert_eq!(a.rx_bytes, own, "tick {tick}: A read through B's process");
            }
        }

        // Discovery's next poll: B has the process, A none.
        let mut table = process.table;
        table.update(
            [
                (1, Path::new(&*format!("/docker/{}", ID.repeat(64)))),
                (2, Path::new(&*format!("/docker/{b_id}"))),
            ],
            None,
            &LabelOwners,
            SystemTime::now(),
        );
        let counters = collector.collect(&table);
        assert_eq!(counters[&b_id].rx_bytes, 2005);
        assert!(!counters.contains_key(&ID.repeat(64)), "{counters:?}");
    }

    #[test]
    fn a_process_namespace_is_looked_up_again_after_ever_more_reads() {
        let process = FakeProcess::new();
        let mut collector = NetnsCollector::new(process.proc());
        let mut rx = |ns: Option<(u64, u64)>| {
            if let Some((ns, rx_bytes)) = ns {
                process.enter(ns);
                process.write(
                    "dev",
                    &DEV.replace("eth0: 1000", &format!("eth0: {rx_bytes}")),
                );
            }
            process.read(&mut collector).rx_bytes
        };

        assert_eq!(rx(Some((1, 100))), 105);
        // The runtime makes the process join its pod's namespace: seen on the next read.
        assert_eq!(rx(Some((2, 200))), 205);
        // Then after 2 reads, 4, …
        assert_eq!(rx(Some((3, 300))), 205);
        assert_eq!(rx(None), 305);
        assert_eq!(rx(Some((4, 400))), 305);
        for _ in 0..2 {
            assert_eq!(rx(None), 305, "the namespace as last looked up");
        }
        assert_eq!(rx(None), 405);
        assert_eq!(collector.open_namespaces(), 1, "the old ones are closed");
    }

    #[test]
    fn snmp_is_read_when_packets_moved_and_netstat_when_tcp_received() {
        let process = FakeProcess::new();
        process.enter(1);
        let mut collector = NetnsCollector::new(process.proc());
        let read = |collector: &mut NetnsCollector| {
            let before = collector.files_read();
            let counters = process.read(collector);
            (counters, collector.files_read() - before)
        };
        let (first, files) = read(&mut collector);
        assert_eq!((first.tcp_retransmits, first.tcp_listen_overflows), (7, 11));
        assert_eq!(files, 3, "the first read reads every file");

        // TCP counters move, but no packet crossed an interface: only net/dev is read.
        let retransmitted = SNMP.replace("11061 7 0 8", "11061 70 0 8");
        process.write("snmp", &retransmitted);
        let (counters, files) = read(&mut collector);
        assert_eq!((counters.tcp_retransmits, files), (7, 1));

        // A packet on loopback: snmp is read, and once more on the next read; TCP received
        // nothing, so netstat is not.
        process.write("dev", &DEV.replace("3193      29", "3193      30"));
        process.write("netstat", &NETSTAT.replace("0 11 12", "0 99 99"));
        let (counters, files) = read(&mut collector);
        assert_eq!((counters.tcp_retransmits, files), (70, 2));
        assert_eq!(counters.tcp_listen_overflows, 11);
        assert_eq!(read(&mut collector).1, 2, "snmp once more");
        assert_eq!(read(&mut collector).1, 1);

        // A segment TCP received on eth0: all three, then snmp and netstat once more.
        process.write("dev", &DEV.replace("3193      29", "3193      31"));
        process.write("snmp", &retransmitted.replace("14431", "14432"));
        let (counters, files) = read(&mut collector);
        assert_eq!((counters.tcp_listen_overflows, files), (99, 3));
        assert_eq!(
            counters.rx_bytes, 1005,
            "interface counters without loopback"
        );
        process.write("netstat", &NETSTAT.replace("0 11 12", "0 100 100"));
        let (counters, files) = read(&mut collector);
        assert_eq!(
            (counters.tcp_listen_overflows, files),
            (100, 3),
            "what the kernel counted just after the last read"
        );

        // That was the 7th read, a slow one. What TCP counts without a packet is seen on
        // the next slow read, the 13th.
        process.write(
            "snmp",
            &retransmitted.replace("5 6 0 14431", "50 6 0 14432"),
        );
        for read_number in 8..=12 {
            let (counters, files) = read(&mut collector);
            assert_eq!(
                (counters.tcp_failed_connects, files),
                (5, 1),
                "read {read_number}"
            );
        }
        let (counters, files) = read(&mut collector);
        assert_eq!(
            (counters.tcp_failed_connects, files),
            (50, 2),
            "no segment arrived: no netstat"
        );
    }

    #[test]
    fn ungated_every_file_is_read_every_time() {
        let process = FakeProcess::new();
        process.enter(1);
        let mut collector = NetnsCollector::new(process.proc());
        collector.ungate();
        for _ in 0..3 {
            process.read(&mut collector);
        }
        assert_eq!(collector.files_read(), 9);
    }

    #[test]
    fn this_process_namespace_reads_through_kept_files() {
        let mut files = NamespaceFiles::open(Path::new("/proc"), std::process::id()).unwrap();
        let mut buf = Vec::new();
        let (first, files_read) = files.read(&mut buf, false).unwrap();
        assert_eq!(files_read, 3);
        let (second, _) = files.read(&mut buf, false).unwrap();
        assert!(second.tx_packets >= first.tx_packets);
    }

    #[test]
    fn dev_counters_near_the_top_of_u64_saturate_instead_of_overflowing() {
        let max = u64::MAX;
        let line =
            |name: &str| format!("{name}: {max} {max} 0 0 0 0 0 0 {max} {max} 0 0 0 0 0 0\n");
        let text = format!(
            "header\nheader\n{}{}{}",
            line("lo"),
            line("eth0"),
            line("eth1")
        );
        let mut counters = NetCounters::default();
        parse_dev(&text, &mut counters);
        assert_eq!(counters.rx_bytes, max);
        assert_eq!(counters.tx_packets, max);
    }
}
