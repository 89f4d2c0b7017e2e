#!/usr/bin/env bash
# Builds abseil and gRPC from Debian 12's own source packages (the versions the normal build
# links: abseil 20220623.1-1+deb12u2, grpc 1.51.1-3, Debian's patches applied) with
# -fsanitize=thread, as shared libraries, into build/tsan-deps/prefix. scripts/sanitize.sh thread
# builds the tree against that prefix so ThreadSanitizer sees the synchronization inside gRPC and
# absl::Mutex instead of reporting every hand-over through them.
#
#   scripts/build-tsan-deps.sh        # run as root on Debian 12; idempotent (stamp file)
#
# Takes long (the gRPC core is ~1000 files under TSan): logs are build/tsan-deps/*.log.
# JOBS (default 2) sets ninja's parallelism.
#
# Choices, each keeping the ABI the project already compiles against:
#   - abseil: Debian's options.h is kept (absl::any/optional/string_view/variant are abseil's
#     own types, inline namespace debian3), CMAKE_CXX_STANDARD=17 as Debian builds it. With
#     those options abseil's ABI does not depend on the standard, so the project's C++20 code
#     uses it as it uses Debian's. ABSL_PROPAGATE_CXX_STD=ON only makes C++17 the floor.
#   - gRPC: every third-party dependency but abseil is Debian's package (protobuf, c-ares, re2,
#     OpenSSL, zlib; upb is bundled in gRPC's source as in Debian's build). No code generators
#     and no tests: the project keeps using Debian's protoc and grpc_cpp_plugin. The
#     grpc_unsecure and grpc++_unsecure variants are not built (the project does not use them
#     and they would be ~400 more TSan-compiled files).
#   - RUNPATH of every installed library points at the prefix, so libgrpc++ loads the
#     instrumented libabsl_* and never Debian's.
set -euo pipefail
cd "$(dirname "$0")/.."

readonly ABSEIL_VERSION="20220623.1-1+deb12u2"
readonly GRPC_VERSION="1.51.1-3"
readonly SAN_FLAGS="-fsanitize=thread -g -O1"
readonly STAMP_TEXT="abseil=${ABSEIL_VERSION} grpc=${GRPC_VERSION} flags=${SAN_FLAGS} cc=$(gcc -dumpfullversion)"

top="$PWD/build/tsan-deps"
src="$top/src"
prefix="$top/prefix"
stamp="$prefix/.tsan-deps-stamp"
jobs="${JOBS:-2}"

# The whole prefix's stamp also names the recipe's revision (2: gRPC with grpc++_reflection), so
# a changed recipe re-runs the stages whose own stamps (settings and arguments) differ.
readonly PREFIX_STAMP_TEXT="$STAMP_TEXT recipe=2"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$PREFIX_STAMP_TEXT" ]]; then
  echo "build-tsan-deps: $prefix is up to date ($PREFIX_STAMP_TEXT)"
  exit 0
fi
mkdir -p "$src" "$prefix"
rm -f "$stamp"

log() { echo "build-tsan-deps: $*"; }
seconds() { date +%s; }

# --- packages and sources ---------------------------------------------------------------------
need_update=0
if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ \
   && ! grep -qs '^deb-src ' /etc/apt/sources.list; then
  log "adding /etc/apt/sources.list.d/debian-src.sources"
  cat > /etc/apt/sources.list.d/debian-src.sources <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
fi

packages=(dpkg-dev g++ cmake ninja-build pkgconf libc-ares-dev libre2-dev libssl-dev zlib1g-dev
          libprotobuf-dev protobuf-compiler libprotoc-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
abseil_src="$src/abseil-${ABSEIL_VERSION%-*}"
grpc_src="$src/grpc-${GRPC_VERSION%-*}"
if (( ${#missing[@]} )) || [[ ! -f "$abseil_src/debian/changelog" || ! -f "$grpc_src/debian/changelog" ]]; then
  log "apt-get update"
  apt-get update -qq >"$top/apt.log" 2>&1 || { cat "$top/apt.log"; exit 1; }
fi
if (( ${#missing[@]} )); then
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >>"$top/apt.log" 2>&1 || { tail -50 "$top/apt.log"; exit 1; }
fi

fetch_source() {  # fetch_source <source package> <version> <unpacked dir>
  local name="$1" version="$2" dir="$3"
  if [[ -f "$dir/debian/changelog" ]] \
     && [[ "$(dpkg-parsechangelog -l "$dir/debian/changelog" -S Version)" == "$version" ]]; then
    return
  fi
  rm -rf "$dir"
  log "apt-get source $name=$version (Debian patches applied by dpkg-source)"
  (cd "$src" && apt-get source -q "$name=$version") >"$top/source-$name.log" 2>&1 \
    || { cat "$top/source-$name.log"; exit 1; }
}
fetch_source abseil "$ABSEIL_VERSION" "$abseil_src"
fetch_source grpc "$GRPC_VERSION" "$grpc_src"

common_cmake=(
  -G Ninja
  -DCMAKE_BUILD_TYPE=None
  -DCMAKE_C_COMPILER=gcc -DCMAKE_CXX_COMPILER=g++
  "-DCMAKE_C_FLAGS=$SAN_FLAGS" "-DCMAKE_CXX_FLAGS=$SAN_FLAGS"
  -DCMAKE_CXX_STANDARD=17 -DCMAKE_CXX_STANDARD_REQUIRED=ON
  -DBUILD_SHARED_LIBS=ON
  -DBUILD_TESTING=OFF
  "-DCMAKE_INSTALL_PREFIX=$prefix" -DCMAKE_INSTALL_LIBDIR=lib
  "-DCMAKE_INSTALL_RPATH=$prefix/lib"
  "-DCMAKE_PREFIX_PATH=$prefix"
)

# build_stage <name> <source dir> <cmake args...>: configure, build and install one package,
# skipped when its own stamp says it was installed with the same settings.
build_stage() {
  local name="$1" dir="$2"; shift 2
  local stage_stamp="$prefix/.tsan-deps-$name" text="$STAMP_TEXT $*"
  if [[ -f "$stage_stamp" && "$(cat "$stage_stamp")" == "$text" ]]; then
    log "$name: already installed"
    return
  fi
  local bdir="$top/build-$name" start
  start=$(seconds)
  log "$name: configuring (log: $top/$name-configure.log)"
  cmake -S "$dir" -B "$bdir" "${common_cmake[@]}" "$@" >"$top/$name-configure.log" 2>&1 \
    || { tail -40 "$top/$name-configure.log"; exit 1; }
  log "$name: building with ninja -j$jobs (log: $top/$name-build.log)"
  ninja -C "$bdir" -j "$jobs" >"$top/$name-build.log" 2>&1 \
    || { tail -40 "$top/$name-build.log"; exit 1; }
  ninja -C "$bdir" install >"$top/$name-install.log" 2>&1 \
    || { tail -40 "$top/$name-install.log"; exit 1; }
  echo "$text" > "$stage_stamp"
  log "$name: done in $(( $(seconds) - start )) s"
}

build_stage abseil "$abseil_src" -DABSL_PROPAGATE_CXX_STD=ON -DABSL_ENABLE_INSTALL=ON

# Leave the insecure variants out of the build and the install (see the header). Idempotent.
if ! grep -q 'add_library(grpc_unsecure EXCLUDE_FROM_ALL' "$grpc_src/CMakeLists.txt"; then
  perl -0pi -e '
    s/^add_library\((grpc_unsecure|grpc\+\+_unsecure)$/add_library($1 EXCLUDE_FROM_ALL/mg;
    s/^  install\(TARGETS (grpc_unsecure|grpc\+\+_unsecure) EXPORT gRPCTargets\n.*?^  \)\n//msg;
  ' "$grpc_src/CMakeLists.txt"
  grep -q 'add_library(grpc_unsecure EXCLUDE_FROM_ALL' "$grpc_src/CMakeLists.txt" \
    && ! grep -q 'install(TARGETS grpc_unsecure' "$grpc_src/CMakeLists.txt" \
    || { echo "build-tsan-deps: could not drop grpc_unsecure from $grpc_src/CMakeLists.txt" >&2; exit 1; }
fi

# gRPC_BUILD_CODEGEN: grpc++_reflection (the gateway serves reflection) is built only with it,
# and its generated sources need grpc_cpp_plugin, so that plugin is built too (the TSan tree
# uses it as well: scripts/sanitize.sh); no other generator.
build_stage grpc "$grpc_src" \
  -DgRPC_INSTALL=ON \
  -DgRPC_BUILD_TESTS=OFF \
  -DgRPC_BUILD_CODEGEN=ON \
  -DgRPC_BUILD_CSHARP_EXT=OFF \
  -DgRPC_BUILD_GRPC_CPP_PLUGIN=ON -DgRPC_BUILD_GRPC_CSHARP_PLUGIN=OFF \
  -DgRPC_BUILD_GRPC_NODE_PLUGIN=OFF -DgRPC_BUILD_GRPC_OBJECTIVE_C_PLUGIN=OFF \
  -DgRPC_BUILD_GRPC_PHP_PLUGIN=OFF -DgRPC_BUILD_GRPC_PYTHON_PLUGIN=OFF \
  -DgRPC_BUILD_GRPC_RUBY_PLUGIN=OFF \
  -DgRPC_ABSL_PROVIDER=package "-Dabsl_DIR=$prefix/lib/cmake/absl" \
  -DgRPC_CARES_PROVIDER=package \
  -DgRPC_PROTOBUF_PROVIDER=package \
  -DgRPC_RE2_PROVIDER=package \
  -DgRPC_SSL_PROVIDER=package \
  -DgRPC_ZLIB_PROVIDER=package \
  -DgRPC_BACKWARDS_COMPATIBILITY_MODE=OFF \
  -DgRPC_INSTALL_LIBDIR=lib -DgRPC_INSTALL_CMAKEDIR=lib/cmake/grpc

echo "$PREFIX_STAMP_TEXT" > "$stamp"
log "installed into $prefix"
