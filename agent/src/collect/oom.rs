//! OOM kills per cgroup (the eBPF OOM map), charged to the victim's own cgroup as it exits.

use herd_agent_common::OomCounts;

use crate::collect::counters::impl_counters;

impl_counters!(OomCounts { kills });

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::{
        collect::counters::{DeltaSampler, fake::*},
        discovery::cgroup2::CgroupIndex,
    };

    #[test]
    fn a_kill_is_reported_once_and_a_removed_cgroup_is_forgotten() {
        let root = tempfile::tempdir().unwrap();
        let leaky = cgroup(root.path(), "leaky");
        let mut index = CgroupIndex::new(root.path());
        let mut map = FakeMap::default();
        map.totals.insert(leaky, OomCounts { kills: 1 });
        let mut sampler = DeltaSampler::new(map);
        assert_eq!(
            sampler.sample(&mut index).unwrap(),
            vec![(leaky, OomCounts { kills: 1 })]
        );
        assert!(sampler.sample(&mut index).unwrap().is_empty());

        fs::remove_dir(root.path().join("leaky")).unwrap();
        assert!(sampler.sample(&mut index).unwrap().is_empty());
        assert!(!sampler.tracks(leaky));
    }
}
