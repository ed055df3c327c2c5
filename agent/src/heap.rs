//! Hands the C allocator's free memory back to the kernel once the agent has let go of
//! containers. glibc keeps what a process frees for reuse and gives back on its own only
//! the top of its heap: under pod churn each wave's freed state stayed resident, and the
//! agent's RSS grew by 2 to 4 KiB a pod. Trimming after a window in which any part of the
//! agent let go of containers keeps it flat (`tests/churn.rs`).

use std::time::Instant;

use tracing::debug;

/// Watches how much per-container state the agent holds, window after window.
#[derive(Debug, Default)]
pub struct HeapTrim {
    entries: usize,
}

impl HeapTrim {
    /// After a window: `entries` is what every part of the agent holds for containers now,
    /// summed. When that is less than after the window before, the allocator's free memory
    /// goes back to the kernel; returns whether it was.
    pub fn after_window(&mut self, entries: usize) -> bool {
        let shrank = entries < self.entries;
        self.entries = entries;
        if !shrank {
            return false;
        }
        let started = Instant::now();
        let released = release_free_memory();
        let took = started.elapsed();
        debug!(
            released,
            ?took,
            "containers let go of: the allocator's free memory goes back to the kernel"
        );
        true
    }
}

/// Whether any memory went back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() -> bool {
    // SAFETY: malloc_trim takes an integer and works on the allocator's own free lists,
    // under their locks.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Other C libraries (musl) keep no such cache of freed memory.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_only_after_a_window_that_let_go_of_state() {
        let mut trim = HeapTrim::default();
        assert!(!trim.after_window(3), "the first window");
        assert!(!trim.after_window(53), "50 pods came");
        assert!(!trim.after_window(53), "nothing changed");
        assert!(trim.after_window(20), "33 went");
        assert!(!trim.after_window(20), "once per drop");
        assert!(trim.after_window(3), "the rest went");
    }
}
