//! Herd's gRPC API and the Kubernetes CRI API, as generated tonic/prost code.
//!
//! The code in `src/gen` is generated from the `.proto` files beside this crate and
//! committed, so that users of the crate need no proto compiler. `tests/generated.rs`
//! fails when it is stale; `HERD_REGEN=1 cargo test -p herd-proto` rewrites it.

/// Kubernetes Container Runtime Interface, `runtime.v1`: the API the kubelet speaks to
/// containerd and CRI-O. Both client and server are generated, so that tests can fake a
/// runtime.
pub mod cri {
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic, unused_qualifications, rustdoc::all)]
        include!("gen/runtime.v1.rs");
    }
}

pub mod backoff;
pub mod codec;
pub mod error_chain;
pub mod query;
pub mod rate;
pub mod settings;
pub mod tls;
pub mod uds;

/// Herd's own API, `herd.v1`.
pub mod herd {
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic, unused_qualifications, rustdoc::all)]
        include!("gen/herd.v1.rs");

        /// The encoded `FileDescriptorSet` of `herd.v1` and its imports, for server
        /// reflection: clients such as grpcurl need no `.proto` files.
        pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("gen/herd.v1.binpb");
    }
}
