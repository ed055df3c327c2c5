# syntax=docker/dockerfile:1
#
# herd-aggregator, for Docker or buildah users. From the repository's root:
#
#   docker build -f deploy/images/aggregator.Dockerfile -t herd-aggregator:0.1.0 .
#   buildah bud -f deploy/images/aggregator.Dockerfile -t herd-aggregator:0.1.0 .
#
# The same build as `cargo xtask image`, which makes the same image without Docker. The
# aggregator loads no eBPF, so the builder needs only Rust. The runtime is distroless/cc
# (glibc, libgcc_s and libm, what `ldd` lists), on the builder's Debian release.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin herd-aggregator -p herd-aggregator \
    && mkdir /out \
    && strip --strip-debug -o /out/herd-aggregator target/release/herd-aggregator

FROM gcr.io/distroless/cc-debian12
COPY --from=build /out/herd-aggregator /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/herd-aggregator"]
