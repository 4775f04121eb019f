# Build: the same `cargo build --release --locked` that CI runs (CI runs
# this stage's steps too: scripts/dockerfile-build-stage).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, in their own layer: it is rebuilt only when the
# manifests change. The manifest names a library, a binary and a benchmark,
# so each gets a stand-in.
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
RUN mkdir -p src/bin/headline-dedup benches \
    && echo 'fn main() {}' > src/bin/headline-dedup/main.rs \
    && echo 'fn main() {}' > benches/core.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src benches
COPY models models
COPY benches benches
COPY src src
RUN touch src/bin/headline-dedup/main.rs src/lib.rs \
    && cargo build --release --locked

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/headline-dedup headline-dedup \
    && mkdir -p /var/lib/headline-dedup \
    && chown headline-dedup:headline-dedup /var/lib/headline-dedup
COPY --from=build /src/target/release/headline-dedup /usr/local/bin/headline-dedup
USER 10001:10001
ENV HEADLINE_DEDUP_LISTEN=0.0.0.0:50051 \
    HEADLINE_DEDUP_METRICS_LISTEN=0.0.0.0:9090 \
    HEADLINE_DEDUP_DATA_DIR=/var/lib/headline-dedup
VOLUME ["/var/lib/headline-dedup"]
# gRPC; metrics (/metrics) and the story board (/)
EXPOSE 50051 9090
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["headline-dedup", "healthcheck", "--addr", "127.0.0.1:50051"]
ENTRYPOINT ["headline-dedup", "serve"]
