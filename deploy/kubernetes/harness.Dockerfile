# The harness (which also embeds the reference server as `harness serve`).
# Build from the repository root:
#   docker build -f deploy/kubernetes/harness.Dockerfile -t recovery-harness .
FROM rust:1.85-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p harness --bin harness

FROM debian:bookworm-slim
# ca-certificates: the system roots for wss:// targets.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --create-home harness
COPY --from=build /src/target/release/harness /usr/local/bin/harness
USER 10001
WORKDIR /home/harness
ENTRYPOINT ["harness"]
