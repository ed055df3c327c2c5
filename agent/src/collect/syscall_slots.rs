//! The fast path of syscall counting, seen from user space. The sys_exit program counts each
//! cgroup in its own slot of `SYSCALL_SLOTS`, one block of slots per CPU, and only falls back
//! to the per-CPU hash when another cgroup holds the slot. The array is mapped into the
//! agent's memory, so a tick reads every slot without a syscall; a cgroup's total is its
//! slots plus its hash entry.

use std::{
    collections::HashMap,
    io,
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use aya::maps::{MapData, MapError};
use herd_agent_common::{
    SYSCALL_SLOTS_PER_CPU, SyscallCounts, SyscallErrors, SyscallSlot, SyscallStats, syscall_slot,
};
use thiserror::Error;
use tracing::debug;

use crate::collect::{
    counters::{CounterMap, Counters as _, MapReadError},
    ebpf::PerCpuCounterMap,
};

/// Words (u64) in one slot: the owner and the eight counters.
const WORDS: usize = size_of::<SyscallSlot>() / size_of::<u64>();

// The slot is read word by word in this order; a layout change must show up here.
const _: () = {
    use std::mem::offset_of;
    assert!(WORDS == 9);
    assert!(offset_of!(SyscallSlot, cgroup_id) == 0);
    assert!(offset_of!(SyscallSlot, stats) == 8);
    assert!(offset_of!(SyscallStats, counts) == 0);
    assert!(offset_of!(SyscallCounts, calls) == 0);
    assert!(offset_of!(SyscallCounts, failed) == 8);
    assert!(offset_of!(SyscallStats, errors) == 16);
    assert!(offset_of!(SyscallErrors, again) == 0);
    assert!(offset_of!(SyscallErrors, interrupted) == 8);
    assert!(offset_of!(SyscallErrors, not_found) == 16);
    assert!(offset_of!(SyscallErrors, bad_call) == 24);
    assert!(offset_of!(SyscallErrors, denied) == 32);
    assert!(offset_of!(SyscallErrors, other) == 40);
};

#[derive(Debug, Error)]
pub enum SlotsError {
    #[error("cannot read the syscall slot map's definition: {0}")]
    Info(#[from] MapError),
    #[error(
        "the syscall slot map is not what this agent expects ({found}); agent and eBPF \
         object do not match"
    )]
    Shape { found: String },
    #[error("cannot map the syscall slots into memory (needs Linux 5.5+): {0}")]
    Mmap(io::Error),
}

/// Where the slots live: the kernel's array mapped into this process, or plain memory in
/// unit tests.
pub trait SlotMemory: Send {
    fn words(&self) -> &[AtomicU64];
}

/// The kernel's `SYSCALL_SLOTS` array, mapped shared and writable (to free slots).
pub struct MappedSlots {
    /// Keeps the map alive for as long as the mapping is used.
    _map: MapData,
    base: NonNull<AtomicU64>,
    words: usize,
    mapped_bytes: usize,
}

// SAFETY: the mapping is owned by this value and only reached through it; the words are
// atomics, so sharing them with the kernel's writers is sound.
unsafe impl Send for MappedSlots {}

impl MappedSlots {
    pub fn new(map: MapData) -> Result<Self, SlotsError> {
        let info = map.info()?;
        let slots = info.max_entries() as usize;
        if info.value_size() as usize != size_of::<SyscallSlot>()
            || slots == 0
            || !slots.is_multiple_of(SYSCALL_SLOTS_PER_CPU as usize)
        {
            return Err(SlotsError::Shape {
                found: format!(
                    "{} entries of {} bytes",
                    info.max_entries(),
                    info.value_size()
                ),
            });
        }
        let bytes = slots * size_of::<SyscallSlot>();
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let mapped_bytes = bytes.div_ceil(page) * page;
        // SAFETY: a fresh shared mapping of the map's fd; the kernel checks that the map is
        // mmapable and that the length fits it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(SlotsError::Mmap(io::Error::last_os_error()));
        }
        let base = NonNull::new(base.cast::<AtomicU64>())
            .ok_or_else(|| SlotsError::Mmap(io::Error::other("mmap returned null")))?;
        debug!(slots, mapped_bytes, "syscall slots mapped");
        Ok(Self {
            _map: map,
            base,
            words: bytes / size_of::<u64>(),
            mapped_bytes,
        })
    }
}

impl SlotMemory for MappedSlots {
    fn words(&self) -> &[AtomicU64] {
        // SAFETY: the mapping holds `words` aligned u64s for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr(), self.words) }
    }
}

impl Drop for MappedSlots {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped; no reference into it outlives `self`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.mapped_bytes) };
    }
}

/// Reads and frees slots, whatever memory they live in.
pub struct SyscallSlots<M> {
    memory: M,
}

impl<M: SlotMemory> SyscallSlots<M> {
    pub fn new(memory: M) -> Self {
        Self { memory }
    }

    fn slots(&self) -> impl Iterator<Item = &[AtomicU64]> {
        self.memory.words().chunks_exact(WORDS)
    }

    /// Adds every owned slot to its cgroup's total.
    pub fn add_to(&self, totals: &mut HashMap<u64, SyscallStats>) {
        for slot in self.slots() {
            let owner = slot[0].load(Ordering::Acquire);
            if owner == 0 {
                continue;
            }
            let word = |i: usize| slot[i].load(Ordering::Relaxed);
            let stats = SyscallStats {
                counts: SyscallCounts {
                    calls: word(1),
                    failed: word(2),
                },
                errors: SyscallErrors {
                    again: word(3),
                    interrupted: word(4),
                    not_found: word(5),
                    bad_call: word(6),
                    denied: word(7),
                    other: word(8),
                },
            };
            let total = totals.entry(owner).or_default();
            *total = total.sum(stats);
        }
    }

    /// Frees the slots of a removed cgroup: counts first, owner last, so that a cgroup that
    /// takes the slot next starts from zero.
    pub fn free(&self, cgroup_id: u64) {
        let per_cpu = SYSCALL_SLOTS_PER_CPU as usize;
        let offset = syscall_slot(cgroup_id) as usize;
        let words = self.memory.words();
        for cpu_block in 0..words.len() / WORDS / per_cpu {
            let at = (cpu_block * per_cpu + offset) * WORDS;
            let slot = &words[at..at + WORDS];
            if slot[0].load(Ordering::Acquire) != cgroup_id {
                continue;
            }
            for word in &slot[1..] {
                word.store(0, Ordering::Relaxed);
            }
            slot[0].store(0, Ordering::Release);
        }
    }
}

/// The syscall counters of every cgroup: the slots plus the hash's overflow.
pub struct SyscallCounterMap<M> {
    pub(crate) slots: SyscallSlots<M>,
    pub(crate) hash: PerCpuCounterMap<SyscallStats>,
}

impl<M: SlotMemory> CounterMap for SyscallCounterMap<M> {
    type Value = SyscallStats;

    fn totals(&self) -> Result<Vec<(u64, SyscallStats)>, MapReadError> {
        let mut totals: HashMap<u64, SyscallStats> = self.hash.totals()?.into_iter().collect();
        self.slots.add_to(&mut totals);
        Ok(totals.into_iter().collect())
    }

    fn forget(&mut self, cgroup_id: u64) -> Result<(), MapReadError> {
        self.slots.free(cgroup_id);
        self.hash.forget(cgroup_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slots in plain memory, laid out as the kernel's array is.
    struct Plain(Vec<AtomicU64>);

    impl Plain {
        fn new(cpus: usize) -> Self {
            Self(
                (0..cpus * SYSCALL_SLOTS_PER_CPU as usize * WORDS)
                    .map(|_| AtomicU64::new(0))
                    .collect(),
            )
        }

        /// What the sys_exit program does for one call of `cgroup_id` on `cpu`: true when it
        /// counted in the slot, false when it had to fall back to the hash.
        fn count(&self, cpu: usize, cgroup_id: u64, failed: bool) -> bool {
            let per_cpu = SYSCALL_SLOTS_PER_CPU as usize;
            let at = (cpu * per_cpu + syscall_slot(cgroup_id) as usize) * WORDS;
            let slot = &self.0[at..at + WORDS];
            let owner = slot[0].load(Ordering::Relaxed);
            if owner != cgroup_id && owner != 0 {
                return false;
            }
            slot[0].store(cgroup_id, Ordering::Relaxed);
            slot[1].fetch_add(1, Ordering::Relaxed);
            if failed {
                slot[2].fetch_add(1, Ordering::Relaxed);
                slot[8].fetch_add(1, Ordering::Relaxed);
            }
            true
        }
    }

    impl SlotMemory for Plain {
        fn words(&self) -> &[AtomicU64] {
            &self.0
        }
    }

    fn totals(slots: &SyscallSlots<Plain>) -> HashMap<u64, SyscallStats> {
        let mut totals = HashMap::new();
        slots.add_to(&mut totals);
        totals
    }

    #[test]
    fn a_cgroup_is_the_sum_of_its_slots_on_every_cpu() {
        let slots = SyscallSlots::new(Plain::new(2));
        let (web, db) = (5000, 5001);
        for _ in 0..3 {
            assert!(slots.memory.count(0, web, false));
        }
        assert!(slots.memory.count(1, web, true));
        assert!(slots.memory.count(1, db, false));

        let totals = totals(&slots);
        assert_eq!(totals.len(), 2);
        assert_eq!(totals[&web].counts.calls, 4);
        assert_eq!(totals[&web].counts.failed, 1);
        assert_eq!(totals[&web].errors.other, 1);
        assert_eq!(totals[&db].counts.calls, 1);
    }

    #[test]
    fn a_freed_slot_starts_from_zero_for_the_next_cgroup() {
        let slots = SyscallSlots::new(Plain::new(2));
        let gone = 7;
        let next = sharing_a_slot_with(gone);
        assert!(slots.memory.count(0, gone, true));
        assert!(slots.memory.count(1, gone, false));
        // The same slot, taken: the next cgroup would count in the hash.
        assert!(!slots.memory.count(0, next, false));

        slots.free(gone);
        assert!(totals(&slots).is_empty());
        assert!(slots.memory.count(0, next, false));
        let totals = totals(&slots);
        assert_eq!(totals[&next].counts.calls, 1);
        assert_eq!(totals[&next].counts.failed, 0);
    }

    /// The next cgroup id after `id` whose slot is `id`'s.
    fn sharing_a_slot_with(id: u64) -> u64 {
        (id + 1..)
            .find(|other| syscall_slot(*other) == syscall_slot(id))
            .unwrap()
    }

    #[test]
    fn consecutive_and_evenly_spaced_ids_spread_over_the_slots() {
        for step in [1, 19, 40, 64] {
            let used: std::collections::HashSet<u32> =
                (0..512).map(|i| syscall_slot(5000 + i * step)).collect();
            assert!(
                used.len() > 350,
                "512 ids {step} apart use only {} slots",
                used.len()
            );
        }
    }

    #[test]
    fn freeing_leaves_other_owners_alone() {
        let slots = SyscallSlots::new(Plain::new(1));
        assert!(slots.memory.count(0, 10, false));
        assert!(slots.memory.count(0, 11, false));
        slots.free(12);
        slots.free(10);
        let totals = totals(&slots);
        assert_eq!(totals.keys().copied().collect::<Vec<_>>(), vec![11]);
    }
}
