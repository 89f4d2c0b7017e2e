#!/usr/bin/env bash
# The README's test command: installs what is needed, checks the contract and formatting,
# builds everything, runs every test, then every fuzz target for a bounded time
# (scripts/fuzz.sh; FUZZ=0 skips it). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

echo "== buf lint (proto/)"
node_modules/.bin/buf lint
echo "buf lint: clean"

echo "== clang-format"
scripts/check-format.sh

echo "== build"
scripts/build.sh

echo "== tests"
ctest --test-dir "${BUILD_DIR:-build/default}" --output-on-failure --timeout 300 \
  -j "${TEST_JOBS:-2}"

if [[ "${FUZZ:-1}" != 0 ]]; then
  echo "== fuzz"
  scripts/fuzz.sh
fi
