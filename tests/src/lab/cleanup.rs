//! Taking the lab down so that nothing is left: pods, containerd and its shims, mounts,
//! cgroups in every hierarchy, the bridge, any iptables rules of the lab's network, and the
//! lab's directories. It works from whatever state a crashed `up` left.

use std::{fmt, fs, path::Path, process::Command, time::Duration};

use super::{
    LabError, cgroups,
    cmd::{self, step},
    containerd, cri, mounts,
    paths::{LabPaths, NETNS_DIR},
    pod, process,
};

/// Where containerd 1.6 puts shim sockets whatever its state directory.
const SHIM_SOCKETS: &str = "/run/containerd/s";

/// What the lab left on the machine; empty when clean.
#[derive(Debug, Default)]
pub struct Leftovers(pub Vec<String>);

impl Leftovers {
    pub fn is_clean(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Leftovers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for item in &self.0 {
            writeln!(f, "  {item}")?;
        }
        Ok(())
    }
}

/// Looks for everything the lab can leave behind.
pub fn leftovers(paths: &LabPaths) -> Leftovers {
    let mut found = Vec::new();
    // What cannot be looked at cannot be called clean.
    let mut unknown = |err: LabError| found_unknown(&mut found, err);
    let processes = lab_processes(paths).unwrap_or_else(|err| {
        unknown(err);
        Vec::new()
    });
    let mounts = lab_mounts(paths).unwrap_or_else(|err| {
        unknown(err);
        Vec::new()
    });
    let cgroups = cgroups::dirs(&paths.kubepods()).unwrap_or_else(|err| {
        unknown(err);
        Vec::new()
    });
    for pid in processes {
        let cmdline = process::cmdline(pid).unwrap_or_default();
        found.push(format!("process {pid}: {cmdline}"));
    }
    for mount in mounts {
        found.push(format!("mount {mount}"));
    }
    for dir in cgroups {
        found.push(format!("cgroup {}", dir.display()));
    }
    for netns in lab_netns(paths) {
        found.push(format!("network namespace {netns}"));
    }
    match netns_mount_left(paths) {
        Ok(true) => found.push(format!("mount {NETNS_DIR} (made by the lab)")),
        Ok(false) => {}
        Err(err) => found_unknown(&mut found, err),
    }
    if bridge_exists(paths) {
        found.push(format!("bridge {}", paths.bridge()));
    }
    for (table, rule) in iptables_rules(paths) {
        found.push(format!("iptables -t {table} {rule}"));
    }
    for dir in [paths.run_dir(), paths.data_dir()] {
        if dir.exists() {
            found.push(format!("directory {}", dir.display()));
        }
    }
    Leftovers(found)
}

/// Tears the lab down and checks that nothing is left.
pub async fn teardown(paths: &LabPaths) -> Result<(), LabError> {
    step("taking the lab down");
    remove_pods(paths).await;
    containerd::stop(paths);

    let strays = lab_processes(paths)?;
    if !strays.is_empty() {
        step(format!(
            "ending {} leftover processes: {strays:?}",
            strays.len()
        ));
        for pid in strays {
            process::kill(pid);
        }
    }
    let mut mounts = lab_mounts(paths)?;
    // Deepest first, so that no mount hides another.
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    if !mounts.is_empty() {
        step(format!("unmounting {} leftover mounts", mounts.len()));
    }
    for mount in mounts {
        mounts::unmount(&mount);
    }
    let kubepods = paths.kubepods();
    if !cgroups::dirs(&kubepods)?.is_empty() {
        step(format!("removing {kubepods} cgroups"));
        cgroups::remove_everywhere(&kubepods)?;
    }
    for netns in lab_netns(paths) {
        step(format!("removing network namespace {netns}"));
        cmd::run(Command::new("ip").args(["netns", "del", &netns]))?;
    }
    // Undone only while no other namespace is named there: `ip netns` makes it again
    // whenever it is needed.
    if netns_mount_left(paths)?
        && fs::read_dir(NETNS_DIR).is_ok_and(|mut entries| entries.next().is_none())
    {
        step(format!("unmounting {NETNS_DIR}, which the lab mounted"));
        mounts::unmount(NETNS_DIR);
    }
    if bridge_exists(paths) {
        step(format!("removing bridge {}", paths.bridge()));
        cmd::run(Command::new("ip").args(["link", "del", paths.bridge()]))?;
    }
    remove_iptables_rules(paths)?;
    for dir in [paths.run_dir(), paths.data_dir()] {
        if dir.exists() {
            step(format!("removing {}", dir.display()));
            fs::remove_dir_all(dir).map_err(LabError::io(dir))?;
        }
    }
    // containerd made these for the shims; they are left only when empty.
    for dir in [SHIM_SOCKETS, "/run/containerd"] {
        let _ = fs::remove_dir(dir);
    }

    let left = leftovers(paths);
    if left.is_clean() {
        step("the lab is down; nothing is left");
        Ok(())
    } else {
        Err(LabError::Leftovers(left.to_string()))
    }
}

/// Removes every pod over CRI, starting containerd again from the lab's state if it is not
/// running (a crashed `up`), so that it stops its own containers and network namespaces.
async fn remove_pods(paths: &LabPaths) {
    if containerd::running_pid(paths).is_none() {
        if !paths.containerd_root().exists() {
            return;
        }
        step("starting containerd again to remove what it ran");
        let restarted = containerd::write_config(paths).and_then(|()| containerd::start(paths));
        if let Err(err) = restarted {
            eprintln!("    containerd did not start ({err}); cleaning up without it");
            return;
        }
    }
    let mut client = match cri::wait_ready(paths, Duration::from_secs(20)).await {
        Ok(client) => client,
        Err(err) => {
            eprintln!("    containerd does not answer ({err}); cleaning up without it");
            return;
        }
    };
    let pods = match pod::list(&mut client).await {
        Ok(pods) => pods,
        Err(err) => {
            eprintln!("    cannot list pods ({err}); cleaning up without CRI");
            return;
        }
    };
    for pod in pods {
        step(format!("removing pod {}/{}", pod.namespace, pod.name));
        if let Err(err) = pod::remove(&mut client, paths, &pod.sandbox_id, &pod.uid).await {
            eprintln!("    {err}");
        }
    }
}

/// containerd, its shims and anything running in the lab's cgroups.
fn lab_processes(paths: &LabPaths) -> Result<Vec<u32>, LabError> {
    let run = paths.run_dir().to_string_lossy().into_owned();
    let data = paths.data_dir().to_string_lossy().into_owned();
    let me = std::process::id();
    let mut pids: Vec<u32> = process::all()
        .into_iter()
        .filter(|pid| *pid != me && process::alive(*pid))
        .filter(|pid| {
            process::cmdline(*pid).is_some_and(|cmd| {
                is_runtime_program(&cmd) && (cmd.contains(&run) || cmd.contains(&data))
            })
        })
        .collect();
    pids.extend(
        cgroups::procs_below(&paths.kubepods())?
            .into_iter()
            .filter(|pid| process::alive(*pid)),
    );
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

/// containerd, its shims and runc: only these are ended by their command line, so that a
/// shell that merely names a lab path is never touched.
fn is_runtime_program(cmdline: &str) -> bool {
    let program = cmdline.split_whitespace().next().unwrap_or_default();
    let name = Path::new(program)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    name == "containerd" || name.starts_with("containerd-shim") || name == "runc"
}

/// Mount points inside the lab's directories: container root filesystems, sandbox /dev/shm,
/// pod network namespaces.
fn lab_mounts(paths: &LabPaths) -> Result<Vec<String>, LabError> {
    Ok(mounts::points()?
        .into_iter()
        .filter(|mount| paths.owns(mount))
        .collect())
}

fn found_unknown(found: &mut Vec<String>, err: LabError) {
    found.push(format!("unknown, could not look: {err}"));
}

/// Whether /run/netns is still the mount point the lab made (and `down` should undo).
fn netns_mount_left(paths: &LabPaths) -> Result<bool, LabError> {
    Ok(paths.netns_mount_marker().exists() && mounts::is_mount_point(NETNS_DIR)?)
}

/// Named network namespaces of the lab: only the probe. Pod network namespaces live in
/// containerd's state directory (`netns_mounts_under_state_dir`) and show up as mounts
/// there, so a node's other `cni-…` namespaces are never touched.
fn lab_netns(paths: &LabPaths) -> Vec<String> {
    let probe = Path::new(NETNS_DIR).join(paths.probe_netns());
    if probe.exists() {
        vec![paths.probe_netns().to_owned()]
    } else {
        Vec::new()
    }
}

fn bridge_exists(paths: &LabPaths) -> bool {
    Path::new("/sys/class/net").join(paths.bridge()).exists()
}

const IPTABLES_TABLES: &[&str] = &["filter", "nat", "mangle"];

/// iptables rules that name the lab's network (the CNI plugins comment every rule they add
/// with the network name), as (table, rule in `-S` form).
fn iptables_rules(paths: &LabPaths) -> Vec<(&'static str, String)> {
    // The plugins comment `name: "<network>" id: "<container>"`; `-S` escapes the quotes.
    let needle = format!(r#"name: \"{}\""#, paths.network());
    let mut rules = Vec::new();
    for table in IPTABLES_TABLES {
        let Ok(out) = cmd::output(Command::new("iptables").args(["-t", table, "-S"])) else {
            continue;
        };
        rules.extend(
            out.lines()
                .filter(|line| line.starts_with("-A ") && line.contains(&needle))
                .map(|line| (*table, line.to_owned())),
        );
    }
    rules
}

/// Deletes the lab's iptables rules, then the chains they leave empty.
fn remove_iptables_rules(paths: &LabPaths) -> Result<(), LabError> {
    let rules = iptables_rules(paths);
    if rules.is_empty() {
        return Ok(());
    }
    step(format!(
        "removing {} iptables rules of network {}",
        rules.len(),
        paths.network()
    ));
    let mut chains: Vec<(&str, String)> = Vec::new();
    for (table, rule) in &rules {
        // The `-S` form is shell-quoted; the shell splits it back into arguments.
        let delete = format!("iptables -t {table} -D {}", &rule["-A ".len()..]);
        cmd::run(Command::new("sh").args(["-c", &delete]))?;
        if let Some(chain) = rule.split_whitespace().nth(1) {
            chains.push((table, chain.to_owned()));
        }
    }
    for (table, chain) in chains {
        let empty = cmd::output(Command::new("iptables").args(["-t", table, "-S", &chain]))
            .is_ok_and(|out| out.lines().all(|l| !l.starts_with("-A ")));
        // Built-in chains cannot be deleted; a chain still referenced fails to delete and
        // stays, which the leftover check does not count (it holds no rule of ours).
        if empty && chain.starts_with("CNI-") {
            let _ = cmd::output(Command::new("iptables").args(["-t", table, "-X", &chain]));
        }
    }
    Ok(())
}
