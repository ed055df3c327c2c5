//! What leaves the agent: the periodic table in the log, the container list.

pub mod container_list;
pub mod table;
