#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, clang-14 with ASan + UBSan) into build/fuzz and runs
# them (README "Fuzzing").
#   scripts/fuzz.sh                         # CI: every target, the whole step within 330 s
#   scripts/fuzz.sh --long 3600 [target...] # long runs: that many seconds per target
#   scripts/fuzz.sh --build-only
#   scripts/fuzz.sh --replay [target...]    # only the corpus and regression inputs
# Per target, first the committed inputs: tests/fuzz/regressions/<target>/ (each must pass, or
# crash as tests/fuzz/known_crashes says) and tests/fuzz/corpus/<target>/; then fuzzing. Any
# crash, leak, timeout, out-of-memory or sanitizer report fails the run, except a known crash
# rediscovered (the target is then restarted for its remaining time). New inputs go to
# $FUZZ_WORK/corpus/<target> (scratch, default build/fuzz/work), crashes to
# $FUZZ_WORK/artifacts/<target>/, never into the repository. Prints executions, coverage (cov:
# edges, ft: features) and corpus size per target, and a summary table.
#
# The CI step (build, replay and runs) is kept within FUZZ_STEP_SECONDS (default 330): whatever
# the build and replay left of it, less 30 s for startup and the report, is split between the
# targets (at least 5 s each), so a cold build (no ccache) shortens the runs instead of
# overrunning. FUZZ_BUDGET sets the total run seconds instead. FUZZ_JOBS: targets run at once
# (default 2; 1 for --long); FUZZ_WORK: the scratch directory; JOBS: build parallelism;
# FUZZ_NICE: the fuzzers' nice level; FUZZ_TIMEOUT: seconds one input may take (default 25; a
# long run at nice 19 on a machine that also builds can starve that long: give it 120).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
build_dir=build/fuzz
mode=ci
long_seconds=0
targets=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --long) mode=long; long_seconds="${2:?--long needs seconds}"; shift 2 ;;
    --build-only) mode=build; shift ;;
    --replay) mode=replay; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 64 ;;
    *) targets+=("$1"); shift ;;
  esac
done

# name -> CI max_len and dictionary, from tests/fuzz/targets.
declare -A max_len dict
all=()
while read -r name len d; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  all+=("$name"); max_len[$name]=$len; dict[$name]=$d
done < tests/fuzz/targets
[[ ${#targets[@]} -gt 0 ]] || targets=("${all[@]}")
for t in "${targets[@]}"; do
  [[ -n "${max_len[$t]:-}" ]] || { echo "unknown target $t (tests/fuzz/targets)" >&2; exit 64; }
done

echo "== fuzz: build ($build_dir)"
step_start=$SECONDS
launcher=()
if command -v ccache >/dev/null 2>&1; then
  # Relative paths in the cache key: a clone elsewhere (CI) hits the same entries.
  export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=1
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 -DCOPILOT_FUZZ=ON \
  "${launcher[@]}" >/dev/null
mkdir -p "$build_dir"
if ! ninja -C "$build_dir" -j "${JOBS:-$(nproc)}" all_fuzzers >"$build_dir/build.log" 2>&1; then
  grep -E 'error|FAILED' "$build_dir/build.log" | head -n 40
  echo "fuzz: build failed ($build_dir/build.log)" >&2
  exit 1
fi
echo "fuzz: built ${#all[@]} targets in $((SECONDS - step_start)) s"
[[ "$mode" == build ]] && exit 0

work="${FUZZ_WORK:-$root/$build_dir/work}"
mkdir -p "$work/logs"
export ASAN_OPTIONS="detect_leaks=1:symbolize=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"

# Known crashes: "<target> <input> <regex>" lines.
declare -A known_regex
while read -r target input regex; do
  [[ -z "$target" || "$target" == \#* ]] && continue
  known_regex["$target/$input"]="$regex"
done < tests/fuzz/known_crashes

# The known regexes of `target`, one per line.
known_for() {
  local key
  for key in "${!known_regex[@]}"; do
    [[ "$key" == "$1/"* ]] && printf '%s\n' "${known_regex[$key]}"
  done
  return 0
}

# A crash report is known when it matches one of the target's regexes.
is_known() {  # target log
  local regex
  while IFS= read -r regex; do
    [[ -n "$regex" ]] && grep -qE -- "$regex" "$2" && return 0
  done < <(known_for "$1")
  return 1
}

# Replays tests/fuzz/regressions/<target>/ and the committed corpus. Prints problems; returns 1
# on any unexpected crash.
replay() {  # target
  local target=$1 bin="$build_dir/tests/fuzz/$1_fuzzer" status=0 input name log
  local dir="tests/fuzz/regressions/$target"
  if [[ -d "$dir" ]]; then
    for input in "$dir"/*; do
      [[ -f "$input" ]] || continue
      name=$(basename "$input")
      log="$work/logs/$target.regression.$name.log"
      if ("$bin" -runs=1 "$input") >"$log" 2>&1; then
        if [[ -n "${known_regex[$target/$name]:-}" ]]; then
          echo "  $target: known crash $name no longer crashes: delete its line in tests/fuzz/known_crashes"
        fi
      elif [[ -n "${known_regex[$target/$name]:-}" ]] && grep -qE -- "${known_regex[$target/$name]}" "$log"; then
        echo "  $target: known crash $name still crashes (tests/fuzz/known_crashes)"
      else
        echo "  $target: REGRESSION $input crashes:"; tail -n 40 "$log" | sed 's/^/    /'
        status=1
      fi
    done
  fi
  log="$work/logs/$target.corpus.log"
  if ! "$bin" -runs=0 "tests/fuzz/corpus/$target" >"$log" 2>&1; then
    echo "  $target: a committed corpus input crashes:"; tail -n 40 "$log" | sed 's/^/    /'
    status=1
  fi
  return $status
}

# Fuzzes `target` for `seconds`, restarting after a known crash; writes one summary line to
# $work/<target>.summary. Returns 1 on an unknown crash.
fuzz_one() {  # target seconds
  local target=$1 seconds=$2 bin="$build_dir/tests/fuzz/$1_fuzzer"
  local len=${max_len[$target]} corpus="$work/corpus/$target" artifacts="$work/artifacts/$target"
  [[ "$mode" == long ]] && len=262144
  mkdir -p "$corpus" "$artifacts"
  local args=(-max_len="$len" -timeout="${FUZZ_TIMEOUT:-25}" -rss_limit_mb=2560 -print_final_stats=1
              -artifact_prefix="$artifacts/")
  [[ "${dict[$target]}" != - ]] && args+=(-dict="tests/fuzz/dict/${dict[$target]}")
  local end=$((SECONDS + seconds)) runs=0 execs=0 known=0 status=0 log left line n
  while left=$((end - SECONDS)); (( left > 0 )); do
    runs=$((runs + 1))
    log="$work/logs/$target.run$runs.log"
    if nice -n "${FUZZ_NICE:-0}" "$bin" "${args[@]}" -max_total_time="$left" \
        "$corpus" "tests/fuzz/corpus/$target" >"$log" 2>&1; then
      n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
      execs=$((execs + ${n:-0}))
      break
    fi
    n=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#' || true)
    execs=$((execs + ${n:-0}))
    if is_known "$target" "$log"; then
      known=$((known + 1))
      (( runs < 4 )) && continue
      break
    fi
    status=1
    echo "  $target: CRASH (log $log):"
    grep -E 'ERROR|FUZZ_CHECK|runtime error|SUMMARY|^ *#[0-9]+ .* in ' "$log" | head -n 30 | sed 's/^/    /'
    echo "    input: $(grep -oE "Test unit written to .*" "$log" | sed 's/Test unit written to //')"
    echo "    minimize: $bin -minimize_crash=1 -max_total_time=60 <input>"
    break
  done
  # cov/ft/corpus from the last status line libFuzzer printed.
  line=$(grep -E '^#[0-9]+.*(cov|corp):' "$log" | tail -1 || true)
  local cov ft corp
  cov=$(grep -oE 'cov: [0-9]+' <<<"$line" | cut -d' ' -f2 || true)
  ft=$(grep -oE 'ft: [0-9]+' <<<"$line" | cut -d' ' -f2 || true)
  corp=$(grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' <<<"$line" | cut -d' ' -f2 || true)
  printf '%-22s %-7s %12s %8s %6s %7s %12s %5s\n' "$target" \
    "$([[ $status -eq 0 ]] && echo ok || echo CRASH)" "$execs" "$seconds" "${cov:-?}" \
    "${ft:-?}" "${corp:-?}" "$known" >"$work/$target.summary"
  return $status
}

failed=0
echo "== fuzz: committed inputs (regressions, corpus)"
for t in "${targets[@]}"; do replay "$t" || failed=1; done
[[ $failed -eq 0 ]] && echo "fuzz: every committed input passed"
[[ "$mode" == replay ]] && exit $failed

jobs=${FUZZ_JOBS:-2}
if [[ "$mode" == long ]]; then
  seconds=$long_seconds
  jobs=${FUZZ_JOBS:-1}  # One at a time unless asked: long runs share the machine.
else
  budget=${FUZZ_BUDGET:-$(( ${FUZZ_STEP_SECONDS:-330} - (SECONDS - step_start) - 30 ))}
  seconds=$(( budget * jobs / ${#targets[@]} ))
  (( seconds >= 5 )) || seconds=5
fi
echo "== fuzz: ${#targets[@]} targets, ${seconds} s each, $jobs at a time (work: $work)"
run_start=$SECONDS
rm -f "$work"/*.summary
for t in "${targets[@]}"; do
  while [[ $(jobs -rp | wc -l) -ge $jobs ]]; do wait -n || true; done
  fuzz_one "$t" "$seconds" &
done
wait
printf '%-22s %-7s %12s %8s %6s %7s %12s %5s\n' target result executions seconds cov ft \
  corpus known
for t in "${targets[@]}"; do
  # The summaries decide: a target without one did not finish.
  if [[ -f "$work/$t.summary" ]]; then cat "$work/$t.summary"; else echo "$t: no summary"; failed=1; fi
  grep -q ' CRASH ' "$work/$t.summary" 2>/dev/null && failed=1
done
echo "fuzz: ran for $((SECONDS - run_start)) s (the whole step: $((SECONDS - step_start)) s)"
if [[ $failed -ne 0 ]]; then
  echo "fuzz: FAILED (reproduce: $build_dir/tests/fuzz/<target>_fuzzer <input>)"
  echo "fuzz: $(grep -c ' ok ' "$work"/*.summary | awk -F: '{s+=$2} END {print s+0}') passed, $(grep -c ' CRASH ' "$work"/*.summary | awk -F: '{s+=$2} END {print s+0}') failed"
  exit 1
fi
echo "fuzz: no crash, leak or sanitizer report"
echo "fuzz: ${#targets[@]} passed, 0 failed"
