# syntax=docker/dockerfile:1.7
#
# rsam images. Two targets:
#
#   docker build -t rsam:cuda .                  # default: CUDA 13.0, H100/H200 (sm_90)
#   docker build -t rsam:cpu --target cpu .      # CPU only, Debian slim
#
#   docker build -t rsam:cuda --build-arg CUDA_COMPUTE_CAP=89 .   # another GPU (e.g. L4 / RTX 40xx)
#
# Run (the model directory is mounted read-only at /models/rsam):
#
#   docker run --rm -p 8080:8080 -v "$PWD/weights/rsam-demo:/models/rsam:ro" rsam:cpu
#   docker run --rm --gpus all -p 8080:8080 -v "$PWD/weights/rsam-b+-800:/models/rsam:ro" rsam:cuda
#
# Every `rsam serve` flag is also an RSAM_* environment variable (README.md).
# Dependencies are compiled in their own layer (cargo-chef): a change to the
# sources rebuilds only the rsam crate.

ARG RUST_VERSION=1.95.0
ARG CHEF_VERSION=0.1.78
ARG DEBIAN_RELEASE=bookworm
# CUDA 13.0 matches driver 580 (the H200 hosts); PTX from a newer nvcc does
# not load on an older driver.
ARG CUDA_VERSION=13.0.2
ARG UBUNTU_VERSION=24.04

# ---------------------------------------------------------------------------
# Shared: cargo-chef and the dependency recipe.
# ---------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
ARG CHEF_VERSION
RUN cargo install cargo-chef --locked --version "${CHEF_VERSION}"
WORKDIR /src

# The recipe lists the dependency graph only, so it (and every layer built
# from it) changes when Cargo.toml / Cargo.lock change, not when src/ does.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# ---------------------------------------------------------------------------
# cpu: build on the Rust image, run on Debian slim.
# ---------------------------------------------------------------------------
FROM chef AS cpu-builder
COPY --from=planner /src/recipe.json recipe.json
RUN --mount=type=cache,id=rsam-cargo-registry,target=/usr/local/cargo/registry \
    cargo chef cook --release --locked --bin rsam --recipe-path recipe.json
COPY . .
RUN --mount=type=cache,id=rsam-cargo-registry,target=/usr/local/cargo/registry \
    cargo build --release --locked --bin rsam \
    && install -m 0755 target/release/rsam /usr/local/bin/rsam

FROM debian:${DEBIAN_RELEASE}-slim AS cpu
# curl is for the HEALTHCHECK only.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 rsam \
    && useradd --system --uid 10001 --gid rsam --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin rsam \
    && mkdir -p /models/rsam
COPY --from=cpu-builder /usr/local/bin/rsam /usr/local/bin/rsam
LABEL org.opencontainers.image.title="rsam (cpu)" \
      org.opencontainers.image.description="RSAM referring remote-sensing segmentation service (CPU build)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV RSAM_MODEL=/models/rsam \
    RSAM_ADDR=0.0.0.0:8080 \
    RSAM_DEVICE=cpu \
    RSAM_DTYPE=f32 \
    RSAM_LOG_FORMAT=json
USER 10001:10001
EXPOSE 8080
# /readyz answers 200 once the model is loaded and warmed (one encode +
# decode); large models on a CPU take a while, hence the start period.
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/readyz"]
ENTRYPOINT ["rsam"]
CMD ["serve"]

# ---------------------------------------------------------------------------
# cuda (default target): build on the CUDA devel image, run on the runtime
# image. Candle's kernels are compiled for CUDA_COMPUTE_CAP (90 = Hopper).
# ---------------------------------------------------------------------------
FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu${UBUNTU_VERSION} AS cuda-chef
ARG RUST_VERSION
ARG CHEF_VERSION
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# nvcc needs a host C++ compiler; the cc crates (oniguruma, mimalloc) a C one.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl g++ gcc libc6-dev make pkg-config \
    && rm -rf /var/lib/apt/lists/*
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:${PATH}
RUN curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
    | sh -s -- -y --no-modify-path --profile minimal --default-toolchain "${RUST_VERSION}" \
    && cargo install cargo-chef --locked --version "${CHEF_VERSION}"
WORKDIR /src

FROM cuda-chef AS cuda-builder
ARG CUDA_COMPUTE_CAP=90
ENV CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP}
COPY --from=planner /src/recipe.json recipe.json
RUN --mount=type=cache,id=rsam-cargo-registry-cuda,target=/usr/local/cargo/registry \
    cargo chef cook --release --locked --features cuda --bin rsam --recipe-path recipe.json
COPY . .
RUN --mount=type=cache,id=rsam-cargo-registry-cuda,target=/usr/local/cargo/registry \
    cargo build --release --locked --features cuda --bin rsam \
    && install -m 0755 target/release/rsam /usr/local/bin/rsam

FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu${UBUNTU_VERSION} AS cuda
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 rsam \
    && useradd --system --uid 10001 --gid rsam --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin rsam \
    && mkdir -p /models/rsam
COPY --from=cuda-builder /usr/local/bin/rsam /usr/local/bin/rsam
LABEL org.opencontainers.image.title="rsam (cuda)" \
      org.opencontainers.image.description="RSAM referring remote-sensing segmentation service (CUDA 13.0 build)" \
      org.opencontainers.image.licenses="Apache-2.0"
# cublas, curand and nvrtc come from the runtime image; libcuda from the
# host driver through the NVIDIA container runtime.
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    RSAM_MODEL=/models/rsam \
    RSAM_ADDR=0.0.0.0:8080 \
    RSAM_DEVICE=cuda:0 \
    RSAM_DTYPE=f32 \
    RSAM_LOG_FORMAT=json
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/readyz"]
ENTRYPOINT ["rsam"]
CMD ["serve"]
