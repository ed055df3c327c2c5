//! What leaves the agent. For now: the periodic table in the log.

pub mod table;
