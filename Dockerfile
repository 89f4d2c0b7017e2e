# copilot-gateway container image (issue #7 "Deployment").
#
#   docker build -t registry.example.com/copilot-gateway:0.1.0 \
#     --build-arg REVISION="$(git rev-parse HEAD)" .
#
# Stage "build" runs the README's own commands on Debian 12, the system the README targets:
# scripts/install-deps.sh, scripts/build.sh and the test suite with ctest. Stage "runtime" is
# debian:bookworm-slim with only the shared libraries copilot-gateway links, a fixed non-root
# user and nothing written at run time (it runs with a read-only root filesystem).
#
# Checked by ctest (tests/deploy/kubernetes): dockerfilelint, a focused check of the rules above
# (the runtime packages against `ldd` of the built binary, the user, ports, labels, entrypoint),
# and the ENTRYPOINT + CMD run as UID 65532 on a read-only root, answering its health checks and
# exiting 0 on SIGTERM. No Docker engine runs where those tests run, so the image itself is not
# built there.
#
# Pin the base image by digest (debian:bookworm-slim@sha256:...) in your own registry for
# reproducible builds.

FROM debian:bookworm-slim AS build
WORKDIR /src
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The JDK (the Java client's tests) links man pages into /usr/share/man, which the slim image
# leaves out; older openjdk packages fail to configure without the directory.
RUN mkdir -p /usr/share/man/man1
# scripts/install-deps.sh first, with only what it reads, so that the Debian and npm packages
# stay cached while the sources change.
COPY scripts/install-deps.sh scripts/
COPY package.json package-lock.json ./
RUN scripts/install-deps.sh
COPY . .
RUN scripts/build.sh
# The README's test command (scripts/test.sh runs the same ctest after buf lint and the
# clang-format check), except:
#  - label "kubernetes": the Kubernetes manifest checks need kubectl, which Debian does not
#    package, and they are about this image's deployment, not its build;
#  - proto_check_breaking: it compares against git tags, and .dockerignore keeps .git out.
RUN ctest --test-dir build/default --output-on-failure --timeout 300 -j "$(nproc)" \
      --label-exclude '^kubernetes$' --exclude-regex '^proto_check_breaking$'
# Debug sections out, symbols kept (absl's stack traces stay readable).
RUN strip --strip-debug -o /copilot-gateway build/default/server/app/copilot-gateway

FROM debian:bookworm-slim AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="copilot-gateway" \
      org.opencontainers.image.description="gRPC gateway (copilot.v1.CopilotService) in front of the Haufe Copilot REST API" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/example/copilot-gateway" \
      org.opencontainers.image.documentation="https://github.com/example/copilot-gateway/blob/main/deploy/kubernetes/README.md" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"
# The Debian packages of the libraries copilot-gateway links (`ldd` + `dpkg -S`; libc6,
# libgcc-s1 and libstdc++6's dependencies come with the base image or these), and the CA
# certificates for TLS to the Haufe API. Versions are not pinned: bookworm's security updates
# should reach the next build.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates \
      libabsl20220623 \
      libcurl4 \
      libgrpc++1.51 \
      libgrpc29 \
      libhiredis0.14 \
      libprometheus-cpp-core1.0 \
      libprotobuf32 \
      libssl3 \
      libstdc++6 \
      libyaml-cpp0.7 \
 && rm -rf /var/lib/apt/lists/*
# A fixed numeric UID/GID (65532, as distroless "nonroot"), so that Kubernetes' runAsNonRoot can
# check it and fsGroup 65532 makes the mounted secrets readable.
RUN groupadd --system --gid 65532 copilot \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin copilot
COPY --from=build /copilot-gateway /usr/local/bin/copilot-gateway
# The config comes from outside (Kubernetes: the ConfigMap mounted at /etc/copilot-gateway);
# every key is documented in deploy/gateway.example.yaml.
USER 65532:65532
# gRPC (listen) and the operations HTTP port (metrics_listen: /metrics, /healthz, /readyz).
EXPOSE 50051 9464
# SIGTERM drains: readiness NOT_SERVING, shutdown_delay, shutdown_grace, exit 0. The gateway is
# PID 1 and handles it itself (no init needed: it starts no child processes).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/copilot-gateway"]
CMD ["--config", "/etc/copilot-gateway/gateway.yaml"]
