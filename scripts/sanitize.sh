#!/usr/bin/env bash
# Builds everything with a sanitizer into build/asan or build/tsan and runs every test there.
#   scripts/sanitize.sh address   # AddressSanitizer + LeakSanitizer + UndefinedBehaviorSanitizer
#   scripts/sanitize.sh thread    # ThreadSanitizer, against abseil and gRPC rebuilt with TSan
# Not in CI: `SANITIZE=1 scripts/test.sh` adds address as its last step (about 35 minutes: with
# it .ci/run measured 59m55s, the whole 60-minute budget); thread first builds TSan-instrumented
# gRPC and abseil (about 30 minutes on 2 cores, once; README "Sanitizers").
#
# thread: scripts/build-tsan-deps.sh first builds Debian's abseil and gRPC sources with
# -fsanitize=thread into build/tsan-deps/prefix (long the first time, then skipped); the tree is
# configured with that prefix first in CMAKE_PREFIX_PATH and its lib/ in the RUNPATH, so the
# instrumented libgrpc++/libgrpc/libgpr/libabsl_* are the ones loaded. Every process's reports,
# the gateway and emulator children included, go to <build dir>/sanitizer-reports/ (one file per
# process, via the sanitizer's log_path; under TSan a process with a report exits 66). The run
# fails if any report exists.
set -euo pipefail
cd "$(dirname "$0")/.."
kind="${1:?usage: scripts/sanitize.sh address|thread}"
cmake_args=(-DCOPILOT_SANITIZE="$kind")
case "$kind" in
  address) build_dir=build/asan ;;
  thread) build_dir=build/tsan ;;
  *) echo "usage: scripts/sanitize.sh address|thread" >&2; exit 64 ;;
esac
# Every process's reports (tests, and the gateway and emulator children they start) go to files
# here; the run fails if there is any, whatever the tests said.
reports="$PWD/$build_dir/sanitizer-reports"
rm -rf "$reports"
mkdir -p "$reports"
scripts/install-deps.sh
if [[ "$kind" == address ]]; then
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:log_path=$reports/asan:log_exe_name=1"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan:log_exe_name=1"
  patterns='^(==[0-9]+==ERROR: (Address|Leak)Sanitizer|.*runtime error:)'
else
  JOBS="${JOBS:-2}" scripts/build-tsan-deps.sh
  prefix="$PWD/build/tsan-deps/prefix"
  # absl_DIR and gRPC_DIR too: a build/tsan configured before would keep Debian's in its cache.
  # The prefix's grpc_cpp_plugin (same gRPC version): Debian's would load the prefix's
  # libgrpc_plugin_support through LD_LIBRARY_PATH and crash.
  cmake_args+=("-DCMAKE_PREFIX_PATH=$prefix" "-DCMAKE_BUILD_RPATH=$prefix/lib"
               "-DGRPC_CPP_PLUGIN=$prefix/bin/grpc_cpp_plugin"
               "-Dabsl_DIR=$prefix/lib/cmake/absl" "-DgRPC_DIR=$prefix/lib/cmake/grpc")
  # No LD_LIBRARY_PATH: the tree's binaries find the instrumented libraries by their RUNPATH
  # (every ELF file under build/tsan resolves libgrpc/libabsl there), and the tools the tests run
  # that use Debian's gRPC (python3-grpcio in the Kubernetes and interop checks, Debian's
  # protoc-gen-grpc_python) crashed loading the instrumented ones through it ("libtsan.so.2:
  # cannot allocate memory in static TLS block", signal 11).
  export TSAN_OPTIONS="suppressions=$PWD/tests/server/integration/tsan.supp:second_deadlock_stack=1:halt_on_error=0:exitcode=66:log_path=$reports/tsan:log_exe_name=1"
  patterns='^WARNING: ThreadSanitizer'
fi
BUILD_DIR="$build_dir" scripts/build.sh "${cmake_args[@]}"
status=0
# Label "image" is left out: it builds the image from the sources with the default flags and runs
# it, nothing of this tree.
ctest --test-dir "$build_dir" --output-on-failure --timeout 600 -j "${TEST_JOBS:-2}" \
  --label-exclude '^image$' ${CTEST_ARGS:-} || status=$?
count=$(cat "$reports"/* 2>/dev/null | grep -cE "$patterns" || true)
echo "== sanitizer ($kind): $count report(s) in $reports"
for f in "$reports"/*; do
  [[ -e "$f" ]] || continue
  echo "   $(grep -cE "$patterns" "$f") in $f"
done
(( count == 0 )) || status=1
exit "$status"
