#!/usr/bin/env bash
# Installs what copilot-gateway needs to build, test and run on Debian 12 (bookworm): Debian
# packages (as root, or through sudo) and the npm tools pinned in package.json. Safe to re-run.
#
#   scripts/install-deps.sh                 everything: build, tests, clients, tools
#   scripts/install-deps.sh --gateway-only  only what `scripts/build.sh --target copilot-gateway`
#                                           needs (the image's build stage without its tests)
set -euo pipefail
cd "$(dirname "$0")/.."
gateway_only=false
case "${1:-}" in
  "") ;;
  --gateway-only) gateway_only=true ;;
  *) echo "install-deps: unknown argument $1" >&2; exit 2 ;;
esac

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

packages=(
  build-essential cmake ninja-build pkg-config git curl ca-certificates openssl libssl-dev procps clang-format
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto
  golang-github-gogo-googleapis-dev libcurl4-openssl-dev libnghttp2-dev nlohmann-json3-dev rapidjson-dev libabsl-dev
  libyaml-cpp-dev prometheus-cpp-dev libgtest-dev libgmock-dev
  # The gateway's malloc (server/app/CMakeLists.txt).
  libjemalloc-dev
  # Nothing of ours links civetweb, but prometheus-cpp's CMake package looks for civetweb's (for
  # its pull library, which we do not use); prometheus-cpp-dev depends on it anyway.
  libcivetweb-dev
  # Fuzzing (scripts/fuzz.sh): clang-14 with libFuzzer, ASan and UBSan (libclang-rt-14-dev).
  clang-14 libclang-rt-14-dev
  # Lint (scripts/tidy.sh, run by scripts/test.sh on the files a commit changed).
  clang-tidy-14
  # Operations: promtool and the prometheus server (metrics tests), redis-server (shared limits).
  prometheus redis-server libhiredis-dev iproute2
  # The upstream behind a real forward proxy (CONNECT, proxy authentication) in the tests.
  tinyproxy-bin
  # tests/bench/side_by_side.sh: h2load, and nginx as the proxy hop to compare with.
  nghttp2-client nginx-light
  # Generated clients in other languages (client/<language>/ and their interop test).
  python3 python3-grpcio python3-protobuf python3-yaml
  golang-go protoc-gen-go protoc-gen-go-grpc golang-google-grpc-dev
  default-jdk-headless libgrpc-java protobuf-compiler-grpc-java-plugin libprotobuf-java
  libnetty-java libperfmark-java
)
if [ "$gateway_only" = true ]; then
  # CMake's configure step finds every package of the build (GTest, promtool's and openssl's
  # programs are looked up but only the tests use them), so the test libraries stay in.
  packages=(
    build-essential cmake ninja-build pkg-config ca-certificates openssl libssl-dev
    libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto
    golang-github-gogo-googleapis-dev libcurl4-openssl-dev libnghttp2-dev nlohmann-json3-dev rapidjson-dev libabsl-dev
    libyaml-cpp-dev prometheus-cpp-dev libgtest-dev libgmock-dev libcivetweb-dev libhiredis-dev
    libjemalloc-dev
  )
fi
# Node.js comes from Debian unless a node (e.g. a newer build) is already installed.
if [ "$gateway_only" = false ]; then
  command -v node >/dev/null 2>&1 || packages+=(nodejs)
  command -v npm >/dev/null 2>&1 || packages+=(npm)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

[ "$gateway_only" = false ] || exit 0
if [ ! -x node_modules/.bin/buf ] || [ ! -d node_modules/@grpc/grpc-js ] || [ ! -d node_modules/@grpc/proto-loader ]; then
  echo "== installing npm tools (package.json)"
  npm install --no-audit --no-fund --loglevel=error >/dev/null
fi
