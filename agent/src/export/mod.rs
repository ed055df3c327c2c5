//! What leaves the agent: the periodic table and findings in the log, the container list,
//! recorded feature frames.

pub mod container_list;
pub mod findings;
pub mod frames;
pub mod table;
