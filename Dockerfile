# heat-pipeline's image. Two ways to build it:
#
# 1. Online, the full multi-stage build from source (the default target, `runtime`):
#      docker build -t heat-pipeline:dev .
#
# 2. From a binary built on the host, with no registry (what scripts/images.sh does): a
#    build context holding nothing but the binary, and a local bookworm base image:
#      mkdir ctx && cp target/release/heat-pipeline ctx/
#      DOCKER_BUILDKIT=0 docker build --target runtime-prebuilt \
#        --build-arg BASE_IMAGE=heat-pipeline/debian:bookworm -f Dockerfile -t heat-pipeline:local ctx
#    The binary must be built against bookworm's glibc (or older).
#
# Works with BuildKit and with the legacy builder (DOCKER_BUILDKIT=0), which needs no
# frontend image. The legacy builder builds every stage before the target, so the stages
# are ordered for it: the runtime-prebuilt stage comes before the Rust builder (no
# rust image is needed for it), and its COPY tolerates the repository as context.

ARG BASE_IMAGE=debian:bookworm-slim
ARG RUST_IMAGE=rust:1-bookworm

# ---- runtime base -----------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime-base
# ca-certificates for amqps:// and https:// etcd endpoints.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 heat \
 && useradd --uid 10001 --gid heat --no-create-home --shell /usr/sbin/nologin heat
ENV RUST_LOG=info
ENTRYPOINT ["/usr/local/bin/heat-pipeline"]
CMD ["run", "all"]

# ---- runtime from a prebuilt binary (--target runtime-prebuilt) --------------------
FROM runtime-base AS runtime-prebuilt
# `heat-pipeline` from the build context. The glob with Cargo.toml lets the legacy
# builder pass through this stage on a full build (context: the repository, no binary);
# there the stage is not the target, and its result is unused.
COPY Cargo.toml* heat-pipeline* /tmp/prebuilt/
RUN if [ -f /tmp/prebuilt/heat-pipeline ]; then \
      install -m 0755 /tmp/prebuilt/heat-pipeline /usr/local/bin/heat-pipeline; \
    elif [ ! -f /tmp/prebuilt/Cargo.toml ]; then \
      echo "no heat-pipeline binary in the build context" >&2; exit 1; \
    fi \
 && rm -rf /tmp/prebuilt
USER heat

# ---- build --------------------------------------------------------------------------
FROM ${RUST_IMAGE} AS builder
# etcd-client generates its gRPC code with protoc at build time; libprotobuf-dev
# holds the well-known .proto files it imports.
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /build

# Build the dependencies against a dummy crate first, so this layer is reused
# as long as Cargo.toml, Cargo.lock and the vendored crates do not change.
COPY Cargo.toml Cargo.lock ./
COPY vendor ./vendor
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src

# Now the real sources. Drop the dummy crate's fingerprints so cargo does not
# mistake the (possibly older-mtime) real files for already built.
COPY src ./src
RUN rm -rf target/release/.fingerprint/heat-pipeline-* \
           target/release/deps/heat_pipeline-* \
           target/release/deps/libheat_pipeline-* \
 && cargo build --release --locked \
 && install -m 0755 target/release/heat-pipeline /usr/local/bin/heat-pipeline

# ---- runtime (default target) -------------------------------------------------------
FROM runtime-base AS runtime
COPY --from=builder /usr/local/bin/heat-pipeline /usr/local/bin/heat-pipeline
USER heat
