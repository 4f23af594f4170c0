# syntax=docker/dockerfile:1
# The edgeshift operator image: a static-ish Rust binary on distroless, non-root.
#
#   docker build -t ghcr.io/edgeshift/edgeshift:0.1.0 .
#
# Build stage: the release binary, exactly the locked dependency versions.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Cache mounts keep the registry and target dir between builds, so a code change rebuilds
# only the crate itself; the binary is copied out because the target dir is not in the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin edgeshift \
 && install -D -m 0755 target/release/edgeshift /out/edgeshift

# Final stage: glibc, libgcc and CA certificates only (no shell, no package manager);
# `nonroot` is uid/gid 65532, the ids the Helm chart runs the pod as.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/edgeshift /edgeshift
USER nonroot
# /metrics, /healthz and /readyz (--metrics-bind-address).
EXPOSE 8080
ENTRYPOINT ["/edgeshift"]
CMD ["run"]
