//! Ending the lab's processes, by pid.

use std::{
    fs,
    time::{Duration, Instant},
};

/// Whether `pid` runs (a zombie does not).
pub fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name, which is in parentheses and may hold spaces.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// Sends SIGTERM to `pid`, waits up to `grace` for it to go, then SIGKILLs it.
pub fn terminate(pid: u32, grace: Duration) {
    signal(pid, libc::SIGTERM);
    if wait_gone(pid, grace) {
        return;
    }
    kill(pid);
}

/// SIGKILLs `pid` and waits briefly for it to go.
pub fn kill(pid: u32) {
    signal(pid, libc::SIGKILL);
    wait_gone(pid, Duration::from_secs(5));
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill has no memory preconditions.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

fn wait_gone(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        // Collect it if it is our own child, so that it does not linger as a zombie.
        // SAFETY: a null status pointer is allowed; WNOHANG never blocks.
        unsafe { libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), libc::WNOHANG) };
        if !alive(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Pids of all processes.
pub fn all() -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The command line of `pid`, arguments joined by spaces.
pub fn cmdline(pid: u32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .map(String::from_utf8_lossy)
            .collect::<Vec<_>>()
            .join(" ")
            .trim_end()
            .to_owned(),
    )
}
