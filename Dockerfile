# Build: the same `cargo build --release --locked` that CI runs.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, in their own layer: it is rebuilt only when the
# manifests change.
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY models models
COPY src src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && install -m 0755 target/release/headline-dedup /usr/local/bin/headline-dedup

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/headline-dedup headline-dedup \
    && mkdir -p /var/lib/headline-dedup \
    && chown headline-dedup:headline-dedup /var/lib/headline-dedup
COPY --from=build /usr/local/bin/headline-dedup /usr/local/bin/headline-dedup
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
