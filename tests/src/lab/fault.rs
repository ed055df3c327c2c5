//! Turns a replica's command and faults into the container's command line: the workload
//! runs as PID 1, each fault runs beside it in the background, time-bounded by stress-ng.

use super::spec::{Fault, FaultKind};

/// stress-ng arguments of one fault, without the timeout.
fn stressor(kind: FaultKind) -> &'static [&'static str] {
    match kind {
        FaultKind::CpuHog => &["--cpu", "1", "--cpu-method", "matrixprod"],
        FaultKind::MemoryLeak => &["--bigheap", "1"],
        FaultKind::IoStorm => &["--hdd", "1", "--hdd-bytes", "64M", "--temp-path", "/tmp"],
        FaultKind::ForkStorm => &["--fork", "4", "--fork-max", "1000"],
        FaultKind::SyscallErrors => &["--sysbadaddr", "1"],
        // stress-ng's socket stressor connects to localhost: the pod's own loopback.
        FaultKind::SocketFlood => &["--sock", "1", "--sock-port", "22000"],
    }
}

/// The container command for `command` with `faults` beside it.
pub fn container_command(command: &[String], faults: &[&Fault]) -> Vec<String> {
    if faults.is_empty() {
        return command.to_vec();
    }
    let mut script = String::new();
    for fault in faults {
        script.push_str(&format!(
            "(sleep {}; exec stress-ng {} --timeout {}s) & ",
            fault.start_after_secs,
            stressor(fault.kind).join(" "),
            fault.duration_secs
        ));
    }
    script.push_str("exec \"$@\"");
    let mut argv = vec![
        "/bin/sh".to_owned(),
        "-c".to_owned(),
        script,
        "sh".to_owned(),
    ];
    argv.extend(command.iter().cloned());
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_run_beside_the_workload() {
        let command = vec!["sleep".to_owned(), "100".to_owned()];
        assert_eq!(container_command(&command, &[]), command);
        let fault = Fault::new(0, FaultKind::CpuHog).after_secs(3).for_secs(20);
        let argv = container_command(&command, &[&fault]);
        assert_eq!(&argv[..2], ["/bin/sh", "-c"]);
        assert_eq!(
            argv[2],
            "(sleep 3; exec stress-ng --cpu 1 --cpu-method matrixprod --timeout 20s) & exec \"$@\""
        );
        assert_eq!(&argv[3..], ["sh", "sleep", "100"]);
    }
}
