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
# exiting 0 on SIGTERM; then (label "image") the image itself is built by scripts/build-image.sh
# (docker, or buildah where no Docker engine runs; it also writes the runtime image's package
# list and SBOM) and run the same way from its own root filesystem, serving a call.
#
# Build arguments:
#   BASE_IMAGE  the Debian 12 base of both stages. Pin it by digest
#               (debian:bookworm-slim@sha256:...) in your own registry for reproducible builds;
#               scripts/build-image.sh makes an equivalent with mmdebstrap when it cannot pull.
#   RUN_TESTS   true (default): the build stage installs everything the README's test command
#               needs, builds everything and runs the tests. false (CI, which runs the tests
#               anyway): it installs only what the gateway needs to build and builds only the
#               gateway. The runtime stage is the same either way.
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
ARG RUN_TESTS=true
WORKDIR /src
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The JDK (the Java client's tests) links man pages into /usr/share/man, which the slim image
# leaves out; older openjdk packages fail to configure without the directory.
RUN mkdir -p /usr/share/man/man1
# scripts/install-deps.sh first, with only what it reads, so that the Debian and npm packages
# stay cached while the sources change.
COPY scripts/install-deps.sh scripts/
COPY package.json package-lock.json ./
RUN if [ "$RUN_TESTS" = true ]; then scripts/install-deps.sh; else scripts/install-deps.sh --gateway-only; fi
COPY . .
RUN if [ "$RUN_TESTS" = true ]; then scripts/build.sh; else scripts/build.sh --target copilot-gateway; fi
# The README's test command (scripts/test.sh runs the same ctest after buf lint and the
# clang-format check), except:
#  - label "kubernetes": the Kubernetes manifest checks need kubectl, which Debian does not
#    package, and they are about this image's deployment, not its build;
#  - proto_check_breaking: it compares against git tags, and .dockerignore keeps .git out.
#  - label "image": building and running this image inside its own build.
RUN if [ "$RUN_TESTS" = true ]; then ctest --test-dir build/default --output-on-failure --timeout 300 -j "$(nproc)" \
      --label-exclude '^(kubernetes|image)$' --exclude-regex '^proto_check_breaking$'; fi
# Debug sections out, symbols kept (absl's stack traces stay readable).
RUN strip --strip-debug -o /copilot-gateway build/default/server/app/copilot-gateway

FROM ${BASE_IMAGE} AS runtime
ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="copilot-gateway" \
      org.opencontainers.image.description="gRPC gateway (copilot.v1.CopilotService) in front of the Haufe Copilot REST API" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/example/copilot-gateway" \
      org.opencontainers.image.documentation="https://github.com/example/copilot-gateway/blob/main/deploy/kubernetes/README.md" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
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
      libjemalloc2 \
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
