//! The network-namespace collector against real namespaces: TCP's refused connects and listen
//! queue overflows in one pod's namespace are read through its process, with the collector's
//! gates on, and a quiet namespace beside it is charged with none of them.

use std::{
    fs,
    net::{Ipv4Addr, SocketAddr, TcpStream},
    os::fd::AsRawFd as _,
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, bail};
use herd_agent::{
    collect::netns::{NetCounters, NetnsCollector},
    discovery::{containers::ContainerTable, domain::LabelOwners},
};
use herd_tests::require_root;

const REFUSED: u64 = 25;
const REFUSED_PORT: u16 = 47001;
const LISTEN_PORT: u16 = 47002;

/// A process alone in a new network namespace with its loopback up, as a pod's; killed on
/// drop, and the namespace goes with it.
struct PodProcess {
    child: Child,
}

impl PodProcess {
    fn start() -> anyhow::Result<Self> {
        let child = Command::new("unshare")
            .args(["--net", "sh", "-c", "ip link set lo up && exec sleep 300"])
            .stdin(Stdio::null())
            .spawn()
            .context("starting a process in a new network namespace (unshare, ip)")?;
        let pod = Self { child };
        // `sh` execs `sleep` once the loopback is up.
        let comm = format!("/proc/{}/comm", pod.pid());
        let deadline = Instant::now() + Duration::from_secs(10);
        while fs::read_to_string(&comm)?.trim() != "sleep" {
            if Instant::now() > deadline {
                bail!("the namespace's loopback did not come up in 10 s");
            }
            thread::sleep(Duration::from_millis(10));
        }
        Ok(pod)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs `work` on a thread that has joined this process's network namespace: the sockets
    /// it makes live there.
    fn inside<T: Send>(&self, work: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
        let ns = fs::File::open(format!("/proc/{}/ns/net", self.pid()))?;
        thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: setns with a namespace fd moves only the calling thread, which
                    // ends with this scope.
                    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        return Err(std::io::Error::last_os_error()).context("setns");
                    }
                    Ok(work())
                })
                .join()
                .expect("the thread in the namespace panicked")
        })
    }
}

impl Drop for PodProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A listening socket with an accept queue of one, never accepted from.
fn listen_with_a_queue_of_one(port: u16) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd as _;
    // SAFETY: plain socket calls on a descriptor this function owns from its creation.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let owned = std::os::fd::OwnedFd::from_raw_fd(fd);
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        if libc::bind(fd, (&raw const addr).cast(), len) != 0 || libc::listen(fd, 1) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(owned)
    }
}

#[test]
fn a_pods_refused_connects_and_listen_overflows_are_read_from_its_namespace() -> anyhow::Result<()>
{
    require_root();
    // `ip` brings up the new namespaces' loopback; `unshare` is util-linux, always there.
    herd_tests::lab::ensure_packages(&["iproute2"])?;
    let busy = PodProcess::start()?;
    let quiet = PodProcess::start()?;

    // Two containers, one per namespace, in a cgroup tree of the test's own: the collector
    // finds a container's process through its cgroup.procs.
    let root = tempfile::tempdir()?;
    let ids = ["b".repeat(64), "c".repeat(64)];
    let cgroups: Vec<String> = ids.iter().map(|id| format!("/docker/{id}")).collect();
    for (cgroup, pod) in cgroups.iter().zip([&busy, &quiet]) {
        let dir = root.path().join(cgroup.trim_start_matches('/'));
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("cgroup.procs"), format!("{}\n", pod.pid()))?;
    }
    let mut table = ContainerTable::new("/proc", root.path(), Duration::ZERO);
    table.update(
        cgroups
            .iter()
            .enumerate()
            .map(|(i, c)| (i as u64, Path::new(c.as_str()))),
        None,
        &LabelOwners,
        SystemTime::now(),
    );
    let mut collector = NetnsCollector::new("/proc");
    let read = |collector: &mut NetnsCollector| -> anyhow::Result<[NetCounters; 2]> {
        let counters = collector.collect(&table);
        Ok([
            *counters
                .get(&ids[0])
                .context("no counters for the busy pod")?,
            *counters
                .get(&ids[1])
                .context("no counters for the quiet pod")?,
        ])
    };
    let before = read(&mut collector)?;

    // Connects to a port nothing listens on: each is refused with a reset.
    let refused = busy.inside(|| {
        (0..REFUSED)
            .filter(|_| {
                TcpStream::connect((Ipv4Addr::LOCALHOST, REFUSED_PORT))
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
            })
            .count() as u64
    })?;
    assert_eq!(refused, REFUSED, "every connect refused");
    let after = read(&mut collector)?;
    let delta = |f: fn(&NetCounters) -> u64, i: usize| f(&after[i]) - f(&before[i]);
    assert_eq!(
        delta(|c| c.tcp_failed_connects, 0),
        REFUSED,
        "failed connects"
    );
    assert_eq!(delta(|c| c.tcp_resets_sent, 0), REFUSED, "resets sent");

    // More connects than a listen queue of one holds, never accepted: the kernel drops the
    // handshakes that do not fit, and counts them as listen queue overflows.
    let overflow = busy.inside(|| -> std::io::Result<usize> {
        let _listener = listen_with_a_queue_of_one(LISTEN_PORT)?;
        let to = SocketAddr::from((Ipv4Addr::LOCALHOST, LISTEN_PORT));
        let streams: Vec<TcpStream> = (0..6)
            .filter_map(|_| TcpStream::connect_timeout(&to, Duration::from_millis(100)).ok())
            .collect();
        Ok(streams.len())
    })??;
    assert!(overflow < 6, "some connects must not fit the queue");
    let last = read(&mut collector)?;
    let busy_overflows = last[0].tcp_listen_overflows - after[0].tcp_listen_overflows;
    assert!(
        busy_overflows > 0,
        "{} connects did not fit, but no listen overflow was read",
        6 - overflow
    );

    let quiet_now = last[1];
    for (name, got) in [
        ("failed connects", quiet_now.tcp_failed_connects),
        ("resets sent", quiet_now.tcp_resets_sent),
        ("listen overflows", quiet_now.tcp_listen_overflows),
        ("received packets", quiet_now.rx_packets),
    ] {
        assert_eq!(got, 0, "the quiet pod's namespace: {name}");
    }

    // Both namespaces quiet now: mostly net/dev alone is read.
    let files_before = collector.files_read();
    const TICKS: u64 = 12;
    for _ in 0..TICKS {
        read(&mut collector)?;
    }
    let files = collector.files_read() - files_before;
    assert!(
        files < 2 * TICKS * 2,
        "{files} files read for two quiet namespaces in {TICKS} ticks"
    );
    Ok(())
}
