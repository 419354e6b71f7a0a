# Sluice: build with the Rust toolchain and librdkafka's build needs, run on a small
# Debian image with only what the binary links (libcurl, zlib, CA certificates).
FROM rust:1.95-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake libcurl4-openssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release -p sluice \
    && cp target/release/sluice /usr/local/bin/sluice

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libcurl4 zlib1g \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --create-home --home-dir /home/sluice sluice \
    && mkdir -p /data/checkpoints /data/files \
    && chown -R sluice:sluice /data
COPY --from=build /usr/local/bin/sluice /usr/local/bin/sluice
COPY sql /sql
WORKDIR /data
# Not root: a job can only reach what this user can.
USER sluice
EXPOSE 8080
ENTRYPOINT ["sluice"]
# Listening beyond loopback needs a token: set SLUICE_AUTH_TOKEN.
CMD ["serve", "--listen", "0.0.0.0:8080", "--checkpoint-dir", "/data/checkpoints", "--data-dir", "/data/files"]
