# Multi-stage build: compile with the Rust toolchain, run as a non-root user on a slim base.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin switchboard

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /data switchboard \
 && mkdir -p /data /etc/switchboard && chown switchboard /data
COPY --from=build /src/target/release/switchboard /usr/local/bin/switchboard
COPY config/switchboard.toml /etc/switchboard/switchboard.toml
USER switchboard
WORKDIR /data
ENV SWITCHBOARD_SERVER__DATA_DIR=/data \
    SWITCHBOARD_METRICS__LISTEN=0.0.0.0:9464
# REST (HTTPS), XMPP c2s, XMPP WebSocket, Janus signalling, SFU media, STUN/TURN, metrics.
EXPOSE 8443 5222 5291 8188 10000/udp 3478 3478/udp 9464
VOLUME ["/data"]
ENTRYPOINT ["switchboard"]
CMD ["serve", "--config", "/etc/switchboard/switchboard.toml"]
