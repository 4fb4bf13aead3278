# syntax=docker/dockerfile:1
# The promtier image: one binary, every role (docs/deployment.md#docker).
#
#   docker build -t promtier:0.1.0 .
#   docker run --rm promtier:0.1.0 check /etc/promtier/topology.yaml    # with the file mounted there
#
# Built on Debian (glibc) rather than as a static musl binary: musl's allocator is much slower
# under many threads, and a TSDB allocates a lot. The runtime keeps /bin/sh, which the
# Kubernetes manifests use to turn a pod name into a node name (config/kubernetes/).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=trixie

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
# The caches keep the crate registry and the build tree from one build to the next; the binary
# is copied out of the cache mount. Debug info is stripped (function names stay for backtraces).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo cargo build --release --locked --bin promtier \
    && install -m 0755 target/release/promtier /usr/local/bin/promtier

# The same Debian release as the builder, so the binary finds the glibc it was linked against.
FROM debian:${DEBIAN_RELEASE}-slim
# ca-certificates: the system roots for https scrapes, pulls and remote write without a ca_file.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 65532 promtier \
    && useradd --system --uid 65532 --gid promtier --home-dir /var/lib/promtier --no-create-home \
       --shell /usr/sbin/nologin promtier \
    && install -d -o promtier -g promtier -m 0750 /var/lib/promtier \
    && install -d -m 0755 /etc/promtier
COPY --from=build /usr/local/bin/promtier /usr/local/bin/promtier

# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 65532:65532
WORKDIR /var/lib/promtier
# The ports the example topologies give each role: globals, leaves, push nodes.
EXPOSE 9090 9101 9201
ENTRYPOINT ["/usr/local/bin/promtier"]
CMD ["--help"]
