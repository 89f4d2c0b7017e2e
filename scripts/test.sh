#!/usr/bin/env bash
# The README's test command: installs what is needed, checks the contract, formatting and
# layering, builds everything, runs clang-tidy on the last commit's C++ files, runs every test
# (each labelled unit or integration), then every fuzz target for a bounded time
# (scripts/fuzz.sh; FUZZ=0 skips it). SANITIZE=1 adds every test again built with
# AddressSanitizer, LeakSanitizer and UndefinedBehaviorSanitizer (scripts/sanitize.sh address,
# in build/asan): about 35 more minutes on 2 cores, which would take CI to its 60-minute budget,
# so CI leaves it out. Exits non-zero on any failure or sanitizer report.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

echo "== buf lint (proto/)"
node_modules/.bin/buf lint
echo "buf lint: clean"

echo "== clang-format"
scripts/check-format.sh

echo "== layers (docs/architecture.md)"
/usr/bin/python3 scripts/check_layers.py

echo "== build"
scripts/build.sh

echo "== clang-tidy (the C++ files of the last commit: scripts/tidy.sh)"
scripts/tidy.sh

echo "== tests"
# Every test is labelled unit (in process, fast: `ctest -L unit`) or integration (processes).
build="${BUILD_DIR:-build/default}"
total=$(ctest --test-dir "$build" -N | sed -n 's/^Total Tests: //p')
unlabelled=$(ctest --test-dir "$build" -N -LE '^(unit|integration)$' | sed -n 's/^Total Tests: //p')
if [[ "$unlabelled" != 0 ]]; then
  ctest --test-dir "$build" -N -LE '^(unit|integration)$' >&2
  echo "tests: $unlabelled of $total tests have neither the unit nor the integration label" >&2
  exit 1
fi
ctest --test-dir "${BUILD_DIR:-build/default}" --output-on-failure --timeout 300 \
  -j "${TEST_JOBS:-2}"

if [[ "${FUZZ:-1}" != 0 ]]; then
  echo "== fuzz"
  scripts/fuzz.sh
fi

if [[ "${SANITIZE:-0}" != 0 ]]; then
  echo "== sanitizers: every test under ASan + LSan + UBSan (build/asan)"
  scripts/sanitize.sh address
fi
