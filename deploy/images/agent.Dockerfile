# syntax=docker/dockerfile:1
#
# herd-agent, with the `herd` client beside it, for Docker or buildah users. From the
# repository's root:
#
#   docker build -f deploy/images/agent.Dockerfile -t herd-agent:0.1.0 .
#   buildah bud -f deploy/images/agent.Dockerfile -t herd-agent:0.1.0 .
#
# The same steps as `cargo xtask setup` and `cargo xtask image`, which build the same image
# without Docker: LLVM 22 and bpf-linker 0.13 for the eBPF programs, nightly with rust-src for
# their `-Z build-std=core`, then the release build. The runtime is distroless/cc: glibc,
# libgcc_s and libm (what `ldd` lists for the binaries, as `cargo xtask image` copies them),
# no shell. Keep it on the builder's Debian release, so that glibc matches.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
RUN rustup toolchain install nightly --profile minimal --component rust-src
RUN LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker --version 0.13.0 --locked \
        --no-default-features --features llvm-22
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bins -p herd-agent \
    && mkdir /out \
    && strip --strip-debug -o /out/herd-agent target/release/herd-agent \
    && strip --strip-debug -o /out/herd target/release/herd

FROM gcr.io/distroless/cc-debian12
COPY --from=build /out/herd-agent /out/herd /usr/local/bin/
# The DaemonSet runs it as root with named capabilities (deploy/base/agent/daemonset.yaml).
USER 0
ENTRYPOINT ["/usr/local/bin/herd-agent"]
CMD ["run"]
