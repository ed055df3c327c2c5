//! Herd's eBPF programs live in the `herd-agent-ebpf` binary (`src/main.rs`), built for the
//! bpf target by the agent's build script. This library target exists only so that the agent
//! can name the crate as a build-dependency and be rebuilt when the programs change.
#![no_std]
