#!/usr/bin/env bash
# Instructions per call (issue #17): the user-space instructions one Complete costs the gateway,
# counted by valgrind's callgrind over CALLS calls (default 2,000, 16 at a time, with h2load)
# after 500 to warm up, against one haufe-emulator, the gateway configured as in
# side_by_side.sh. Unlike CPU time on a shared VM (15-20% apart from run to run), the count is
# the same to within 0.1% run after run, so two builds can be told apart by a few percent. Also
# counts gRPC alone (grpc_floor_server --mode callback-hop: the gateway's shape, no upstream).
# Prints, per binary, the instructions per call and the functions with the most of them.
#
#   tests/bench/instructions_per_call.sh                      # BUILD_DIR's gateway
#   tests/bench/instructions_per_call.sh OLD_BINARY NEW_BINARY  # two builds side by side
# BUILD_DIR (default build/default) holds the emulator, the floor server and the default
# gateway; TOP (default 12) functions are listed per binary (0: none); KEEP_DUMP=<prefix> keeps
# each callgrind dump as <prefix>.<name> (for callgrind_annotate --inclusive=yes); LIBCURL_DIR
# runs the gateways with that directory's libcurl.so.4 (tests/bench/libcurl_with_symbols.sh: the
# same libcurl with its functions named). Fewer CALLS
# give higher figures (the warm-up's tail and timers spread over fewer calls): compare like with
# like.
set -euo pipefail
binaries=()
for binary in "$@"; do binaries+=("$(realpath "$binary")"); done
[ -n "${KEEP_DUMP:-}" ] && KEEP_DUMP="$(realpath -m "$KEEP_DUMP")"
cd "$(dirname "$0")/../.."
build_dir="${BUILD_DIR:-build/default}"
calls="${CALLS:-2000}"
top="${TOP:-12}"
for tool in h2load valgrind callgrind_control callgrind_annotate protoc; do
  command -v "$tool" >/dev/null || {
    echo "instructions_per_call: $tool is missing (apt-get install nghttp2-client valgrind protobuf-compiler)" >&2
    exit 2
  }
done
ninja -C "$build_dir" copilot-gateway haufe-emulator grpc_floor_server >/dev/null
[ "${#binaries[@]}" -gt 0 ] || binaries=("$build_dir/server/app/copilot-gateway")

BENCH_NAME=instructions_per_call
# shellcheck source=tests/bench/bench_lib.sh
source tests/bench/bench_lib.sh

start_emulator "$build_dir"
write_gateway_config "$work/gateway.yaml" "$upstream" "$work/api-key"
write_complete_request "$work" "$hr_assistant" "$question"

# measure NAME COMMAND...: starts COMMAND under callgrind, warms it up, counts CALLS calls.
measure() {
  local name=$1
  shift
  local out="$work/callgrind.$name"
  local -a environment=()
  # The gateways only: the floor server links no libcurl.
  [[ "$name" == gateway-* ]] && [ -n "${LIBCURL_DIR:-}" ] &&
    environment=("LD_LIBRARY_PATH=$LIBCURL_DIR")
  env "${environment[@]}" valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$out" "$@" >"$work/$name.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  local addr
  addr="$(wait_for_address "$work/$name.log" "$name" 60)"
  local -a load=(-c 16 -m 1 -t 1 -H "content-type: application/grpc" -H "te: trailers"
                 -d "$work/complete.grpc" "http://$addr/copilot.v1.CopilotService/Complete")
  h2load -n 500 "${load[@]}" >/dev/null 2>&1
  callgrind_control --instr=on "$pid" >/dev/null 2>&1
  h2load -n "$calls" "${load[@]}" >"$work/$name.h2load"
  callgrind_control -d "$pid" >/dev/null 2>&1
  local dump
  for _ in $(seq 1 100); do
    dump="$(ls "$out".* 2>/dev/null | head -n1 || true)"
    [ -n "$dump" ] && [ -s "$dump" ] && break
    sleep 0.1
  done
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  forget_pid "$pid"
  if [ -z "$dump" ] || [ ! -s "$dump" ]; then
    echo "instructions_per_call: $name: callgrind wrote no dump" >&2
    cat "$work/$name.log" >&2
    exit 1
  fi
  local succeeded
  succeeded="$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' "$work/$name.h2load")"
  if [ "$succeeded" != "$calls" ]; then
    echo "instructions_per_call: $name: $succeeded of $calls calls succeeded" >&2
    cat "$work/$name.h2load" >&2
    exit 1
  fi
  callgrind_annotate --inclusive=no "$dump" 2>/dev/null >"$work/$name.annotate"
  [ -n "${KEEP_DUMP:-}" ] && cp "$dump" "$KEEP_DUMP.$name"
  local total
  total="$(awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }' "$work/$name.annotate")"
  if [ -z "$total" ]; then
    echo "instructions_per_call: $name: no total in callgrind's dump" >&2
    exit 1
  fi
  echo "$name: $((total / calls)) instructions per call ($calls calls, user space, every thread)"
  if [ "$top" -gt 0 ]; then
    # Lines "  1,234,567 (12.3%)  file:function [object]" after the header.
    awk -v n="$calls" -v top="$top" '
      /^-+$/ { dashes++; next }
      dashes >= 3 && /^ *[0-9,]+ / && !/PROGRAM TOTALS/ && shown < top {
        line = $0; ir = $1; gsub(",", "", ir)
        sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, "", line)
        printf "  %9.0f  %s\n", ir / n, substr(line, 1, 110); shown++
      }' "$work/$name.annotate"
  fi
}

measure grpc-alone "$build_dir/tests/bench/gateway/grpc_floor_server" --mode callback-hop
i=0
for binary in "${binaries[@]}"; do
  i=$((i + 1))
  measure "gateway-$i" "$binary" --config "$work/gateway.yaml"
  echo "  (gateway-$i: $binary)"
done
