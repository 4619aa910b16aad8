# syntax=docker/dockerfile:1
#
# ArtPay node image: `artpay node --config /etc/artpay/node.json` by default; every other
# subcommand works too (`docker run --rm IMAGE keygen --out …`, `… certs create-ca …`).
# Build from the repository root:  docker build -t artpay:local .
# How to run it (single container, compose, Kubernetes): deploy/README.md.
#
# Nothing here was built or run by the session that wrote it (no container runtime there); it is
# checked statically by scripts/check-deploy (hadolint).

# ---------------------------------------------------------------------------------------------
# Build stage: the official Swift 6.3 toolchain on Ubuntu 24.04 (noble), the same patch release
# (6.3.1) the project is developed with. Pinned to a version tag, never `latest`.
# ---------------------------------------------------------------------------------------------
FROM swift:6.3.1-noble AS build

WORKDIR /build

# The manifest first (and Package.resolved when the checkout has one: it is git-ignored, hence the
# glob), so dependency resolution is its own layer that only changes with the manifest.
COPY Package.* ./

# SwiftPM's shared repository cache and the build directory are BuildKit cache mounts: rebuilds
# after a source change reuse the fetched dependencies and the compiled modules. `sharing=locked`
# keeps two concurrent builds from writing the same cache at once.
RUN --mount=type=cache,target=/root/.cache/org.swift.swiftpm,sharing=locked \
    --mount=type=cache,target=/build/.build,sharing=locked \
    swift package resolve

COPY . .

# --static-swift-stdlib links the Swift runtime, Foundation and Dispatch into the binary, so the
# runtime stage needs no Swift toolchain. The binary is copied out of the cache mount in the same
# step (a cache mount is not part of the image). swift-backtrace-static is the toolchain's crash
# backtracer (a static binary as well): the runtime starts it when the node crashes.
RUN --mount=type=cache,target=/root/.cache/org.swift.swiftpm,sharing=locked \
    --mount=type=cache,target=/build/.build,sharing=locked \
    swift build -c release --product artpay --static-swift-stdlib \
    && mkdir -p /staging \
    && cp "$(swift build -c release --product artpay --static-swift-stdlib --show-bin-path)/artpay" /staging/artpay \
    && cp /usr/libexec/swift/linux/swift-backtrace-static /staging/swift-backtrace-static

# ---------------------------------------------------------------------------------------------
# Runtime stage: plain Ubuntu 24.04, the distribution the binary was linked on (same glibc).
# ---------------------------------------------------------------------------------------------
FROM ubuntu:24.04

# What a --static-swift-stdlib binary still loads from the system (its ELF NEEDED entries, checked
# with readelf on the project's own build: libc, libm, libstdc++, libgcc_s, libz and, through
# FoundationNetworking, libcurl):
#   - libcurl4: FoundationNetworking (URLSession, used by the `artpay` client commands in the same
#     binary) is linked statically but calls the system libcurl; without it the binary does not
#     start at all, node or not. On noble apt installs it as libcurl4t64 (as Swift's own
#     noble slim image does).
#   - zlib1g, libstdc++6, libgcc-s1: compression (swift-nio-extras/compress-nio) and the C++
#     runtime the Swift runtime uses; already in the base image, listed so a base change cannot
#     drop them silently.
#   - ca-certificates: the trust store for outgoing HTTPS (payments.provider.url through
#     AsyncHTTPClient/NIOSSL, which reads /etc/ssl/certs).
#   - tzdata: Foundation's TimeZone data (log and API timestamps in named zones).
# Not installed: libxml2 (FoundationXML is not linked: nothing imports it), libsqlite3 (the SQLite
# store is compiled in from sqlite-nio's own copy), the Swift runtime libraries (static), curl or
# any shell tool beyond the base image's.
# hadolint ignore=DL3008
RUN export DEBIAN_FRONTEND=noninteractive \
    && apt-get -q update \
    && apt-get -q install -y --no-install-recommends \
        ca-certificates \
        libcurl4 \
        libgcc-s1 \
        libstdc++6 \
        tzdata \
        zlib1g \
    && rm -rf /var/lib/apt/lists/*

# A fixed uid/gid (10001) so volumes, Kubernetes' runAsUser/fsGroup and file ownership on the host
# can name it. /etc/artpay/secrets is where compose's one-shot init service writes the keys and
# certificates (a named volume mounted there starts with this directory's owner).
RUN groupadd --system --gid 10001 artpay \
    && useradd --system --uid 10001 --gid artpay --home-dir /var/lib/artpay --create-home \
        --shell /usr/sbin/nologin artpay \
    && mkdir -p /etc/artpay/secrets \
    && chown artpay:artpay /etc/artpay/secrets

COPY --from=build /staging/artpay /usr/local/bin/artpay
COPY --from=build /staging/swift-backtrace-static /usr/libexec/swift/linux/swift-backtrace-static

# Crash backtraces (docs/Backtracing.rst of the Swift repository: a comma-separated list of
# key=value pairs): on, with paths sanitized, every thread and the loaded images, never waiting
# for interaction (no terminal in a container), using the static backtracer copied above. Output
# goes to stdout, i.e. the container log.
ENV SWIFT_BACKTRACE=enable=yes,sanitize=yes,threads=all,images=all,interactive=no,swift-backtrace=/usr/libexec/swift/linux/swift-backtrace-static

WORKDIR /var/lib/artpay
USER 10001:10001

# HTTP (API, web room, /health/*, /metrics) and cluster traffic (mutual TLS), the defaults of
# http.port and cluster.port. The configuration must bind them on 0.0.0.0 (http.host,
# cluster.host), not the default 127.0.0.1, to be reachable from outside the container.
EXPOSE 8100 7100

# Liveness only (/health/live: the process answers HTTP), never /health/ready. Docker Engine and
# Compose only report the status, they never restart an unhealthy container; an orchestrator that
# does (Swarm) would kill a node that is paused or starved and about to recover, so there give
# `--no-healthcheck` or raise the retries. Kubernetes ignores it (deploy/k8s has its own probes).
# bash's /dev/tcp because the image has no curl; ARTPAY_HTTP_PORT is honoured when it is set.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=6 \
    CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${ARTPAY_HTTP_PORT:-8100} && printf 'GET /health/live HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]

ENTRYPOINT ["artpay"]
CMD ["node", "--config", "/etc/artpay/node.json"]
