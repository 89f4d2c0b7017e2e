#!/usr/bin/env bash
# Configures and builds everything into build/default (or $BUILD_DIR). Extra arguments are
# passed to cmake's configure step, e.g. -DCOPILOT_SANITIZE=address; `--target NAME` (first)
# builds only that target (e.g. copilot-gateway, as the image's build stage does for CI).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${BUILD_DIR:-build/default}"
jobs="${JOBS:-$(nproc)}"
targets=()
while [ "${1:-}" = "--target" ]; do
  targets+=("$2")
  shift 2
done
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" "$@" >/dev/null
ninja -C "$build_dir" -j "$jobs" "${targets[@]}"
