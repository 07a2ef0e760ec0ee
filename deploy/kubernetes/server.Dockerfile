# The reference server. Build from the repository root:
#   docker build -f deploy/kubernetes/server.Dockerfile -t recovery-server .
FROM rust:1.85-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p server --bin server

FROM debian:bookworm-slim
RUN useradd --uid 10001 server
COPY --from=build /src/target/release/server /usr/local/bin/server
USER 10001
# Every flag has an environment variable (server --help); the secret comes
# from SERVER_JWT_SECRET, never the command line.
ENV SERVER_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["server"]
