//! A container's process exits and its pid goes to a process of another container before
//! discovery polls again (forced through `/proc/sys/kernel/ns_last_pid`, as a busy node does
//! by chance): the first container is never read through the second one's network
//! namespace, and the next poll gives the pid to the container whose cgroup lists it. Root
//! only; no lab.

use std::{
    fs,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, bail, ensure};
use herd_agent::{
    collect::netns::NetnsCollector,
    discovery::{
        containers::{Container, ContainerTable},
        domain::LabelOwners,
    },
    host::{self, HostPaths},
};
use herd_tests::{cgroup::OwnedCgroup, require_root};

/// Tries at taking a given pid before the test gives up: other processes of the machine
/// fork too, and may take it first.
const ATTEMPTS: usize = 200;

/// A child process killed when dropped.
struct Sleeper(Child);

impl Sleeper {
    /// `sleep` in this process's network namespace, or in a new empty one (`unshare --net`
    /// execs `sleep` in the same process, so the pid is the sleeper's).
    fn start(own_netns: bool) -> anyhow::Result<Self> {
        let mut command = if own_netns {
            let mut c = Command::new("unshare");
            c.args(["--net", "sleep", "600"]);
            c
        } else {
            let mut c = Command::new("sleep");
            c.arg("600");
            c
        };
        let sleeper = Self(
            command
                .stdout(Stdio::null())
                .spawn()
                .context("starting sleep")?,
        );
        if own_netns {
            // unshare(2) runs a moment after the fork: wait until the process is in its
            // new namespace.
            let ours = fs::read_link("/proc/self/ns/net")?;
            let deadline = Instant::now() + Duration::from_secs(5);
            while fs::read_link(format!("/proc/{}/ns/net", sleeper.pid()))? == ours {
                ensure!(Instant::now() < deadline, "unshare --net did not unshare");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Ok(sleeper)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A sleeper in a new network namespace whose pid is `pid`, made the next pid through
/// `ns_last_pid`.
fn sleeper_with_pid(pid: u32) -> anyhow::Result<Sleeper> {
    for _ in 0..ATTEMPTS {
        fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string())
            .context("writing /proc/sys/kernel/ns_last_pid")?;
        let sleeper = Sleeper::start(true)?;
        if sleeper.pid() == pid {
            return Ok(sleeper);
        }
    }
    bail!("another process took pid {pid} first, {ATTEMPTS} times")
}

/// The table's container `id`.
fn container(table: &ContainerTable, id: &str) -> Option<Container> {
    table.containers().into_iter().find(|c| c.id == id).cloned()
}

#[test]
fn a_pid_that_goes_to_another_container_is_not_read_for_the_first() -> anyhow::Result<()> {
    require_root();
    let mount = host::cgroup2_mount(&HostPaths::default().proc)?;
    let top = OwnedCgroup::new(&mount, "pid-reuse")?;
    let (a_id, b_id) = ("a".repeat(64), "b".repeat(64));
    let a = OwnedCgroup::at(top.path(), &a_id)?;
    let b = OwnedCgroup::at(top.path(), &b_id)?;
    let (a_path, b_path) = (top.relative().join(&a_id), top.relative().join(&b_id));
    let cgroups = |a: &OwnedCgroup, b: &OwnedCgroup| -> anyhow::Result<[(u64, PathBuf); 2]> {
        Ok([(a.id()?, a_path.clone()), (b.id()?, b_path.clone())])
    };
    let poll = |table: &mut ContainerTable| -> anyhow::Result<()> {
        let listed = cgroups(&a, &b)?;
        table.update(
            listed.iter().map(|(id, path)| (*id, path.as_path())),
            None,
            &LabelOwners,
            SystemTime::now(),
        );
        Ok(())
    };
    let mut table = ContainerTable::new("/proc", &mount, Duration::ZERO);
    let mut collector = NetnsCollector::new("/proc");

    // A's process, in this machine's network namespace, whose interfaces have traffic.
    let first = Sleeper::start(false)?;
    let pid = first.pid();
    a.add(pid)?;
    poll(&mut table)?;
    let own = collector.collect(&table);
    let a_rx = own.get(&a_id).context("A's counters")?.rx_bytes;
    ensure!(a_rx > 0, "the host's namespace shows no traffic: {own:?}");

    // It exits; its pid goes to a process in a new, empty namespace in B's cgroup.
    drop(first);
    let second = sleeper_with_pid(pid)?;
    b.add(pid)?;
    let a_container = container(&table, &a_id).context("A in the table")?;
    ensure!(
        !table.holds(&a_container, pid),
        "pid {pid} is still taken for A's"
    );
    for tick in 0..40 {
        let counters = collector.collect(&table);
        if let Some(read) = counters.get(&a_id) {
            ensure!(
                read.rx_bytes >= a_rx,
                "tick {tick}: A was read through B's process (rx {} after {a_rx})",
                read.rx_bytes
            );
        }
    }

    // The next poll: the pid is B's, A has none.
    poll(&mut table)?;
    ensure!(
        container(&table, &a_id)
            .context("A in the table")?
            .pid
            .is_none(),
        "A kept pid {pid}"
    );
    ensure!(
        container(&table, &b_id).context("B in the table")?.pid == Some(pid),
        "B did not get pid {pid}"
    );
    let counters = collector.collect(&table);
    ensure!(
        !counters.contains_key(&a_id),
        "A has counters: {counters:?}"
    );
    ensure!(
        counters.get(&b_id).context("B's counters")?.rx_bytes == 0,
        "B's new namespace has had no traffic: {counters:?}"
    );
    drop(second);
    Ok(())
}
