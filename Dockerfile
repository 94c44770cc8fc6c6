# case-escrow in a container: built with the Rust toolchain, run on debian-slim as a
# non-root user, the ledger on a volume, health checked over gRPC.
#
#   docker build -t case-escrow .
#   docker run -d --name case-escrow -p 127.0.0.1:50051:50051 -p 127.0.0.1:9464:9464 \
#       -v case-escrow-data:/data case-escrow
#   docker exec case-escrow cat /data/admin.token     # the first administrator's token
#
# SIGTERM (docker stop) stops it gracefully: open calls finish, queued writes commit.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY benches benches
COPY src src
RUN cargo build --release --locked --bin case-escrow

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin case-escrow \
 && mkdir -p /data && chown case-escrow:case-escrow /data && chmod 0700 /data
COPY --from=build /src/target/release/case-escrow /usr/local/bin/case-escrow
USER case-escrow:case-escrow
WORKDIR /data
VOLUME ["/data"]
# Listen on every interface of the container; publish the ports only where needed.
# A 5 s grace leaves the store time to flush inside `docker stop`'s default 10 s. After
# millions of receipts since the start, the stop also writes the state's snapshot (about
# 0.5 s a million, and about a third more memory while it does): `docker stop -t 30`
# lets it up to about 20 million receipts since the start (extrapolated from 10 M);
# else the next start does it.
ENV CASE_ESCROW_DATA_DIR=/data \
    CASE_ESCROW_LISTEN=0.0.0.0:50051 \
    CASE_ESCROW_METRICS_LISTEN=0.0.0.0:9464 \
    CASE_ESCROW_LOG_FORMAT=json \
    CASE_ESCROW_SHUTDOWN_GRACE_S=5
EXPOSE 50051 9464
# The standard gRPC health check; it needs no token.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["case-escrow", "health", "--server", "http://127.0.0.1:50051"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["case-escrow"]
CMD ["serve"]
