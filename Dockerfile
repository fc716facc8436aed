# syntax=docker/dockerfile:1

# ---- build ------------------------------------------------------------------
FROM rust:1-bookworm AS builder
# etcd-client generates its gRPC code with protoc at build time; libprotobuf-dev
# holds the well-known .proto files it imports.
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /build

# Build the dependencies against a dummy crate first, so this layer is reused
# as long as Cargo.toml and Cargo.lock do not change.
COPY Cargo.toml Cargo.lock ./
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

# ---- runtime ----------------------------------------------------------------
FROM debian:bookworm-slim
# ca-certificates for amqps:// and https:// etcd endpoints.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 heat \
 && useradd --uid 10001 --gid heat --no-create-home --shell /usr/sbin/nologin heat
COPY --from=builder /usr/local/bin/heat-pipeline /usr/local/bin/heat-pipeline
USER heat
ENV RUST_LOG=info
ENTRYPOINT ["/usr/local/bin/heat-pipeline"]
CMD ["run", "all"]
