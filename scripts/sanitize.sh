#!/usr/bin/env bash
# Builds everything with a sanitizer into build/asan or build/tsan and runs every test there.
#   scripts/sanitize.sh address   # AddressSanitizer + LeakSanitizer
#   scripts/sanitize.sh thread    # ThreadSanitizer (see the README: not clean yet)
# Not part of scripts/test.sh (CI): each run rebuilds the whole tree.
set -euo pipefail
cd "$(dirname "$0")/.."
kind="${1:?usage: scripts/sanitize.sh address|thread}"
case "$kind" in
  address) build_dir=build/asan; export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0" ;;
  thread)
    build_dir=build/tsan
    export TSAN_OPTIONS="suppressions=$PWD/tests/server/integration/tsan.supp:second_deadlock_stack=1"
    ;;
  *) echo "usage: scripts/sanitize.sh address|thread" >&2; exit 64 ;;
esac
scripts/install-deps.sh
BUILD_DIR="$build_dir" scripts/build.sh -DCOPILOT_SANITIZE="$kind"
ctest --test-dir "$build_dir" --output-on-failure --timeout 600 -j "${TEST_JOBS:-2}"
