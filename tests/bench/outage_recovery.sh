#!/usr/bin/env bash
# How fast the gateway serves again after an upstream outage: the emulator answers every request
# with 503 for OUTAGE seconds (default 70, longer than the upstream budget's minute window) while
# `copilot assistants` runs in a loop against the gateway (default settings: the trial tier's
# budget, the circuit breaker's defaults); then the fault is cleared and the script prints how
# the calls of the outage ended (grouped by the first line of their error) and how long after the
# upstream came back the first call succeeded.
#
#   tests/bench/outage_recovery.sh
#   GATEWAY_BIN=/tmp/old-gateway OUTAGE=30 tests/bench/outage_recovery.sh
# BUILD_DIR (default build/default) holds the emulator and the CLI; GATEWAY_BIN the gateway
# (default BUILD_DIR's).
set -euo pipefail
[ -n "${GATEWAY_BIN:-}" ] && GATEWAY_BIN="$(realpath "$GATEWAY_BIN")"
cd "$(dirname "$0")/../.."
build_dir="${BUILD_DIR:-build/default}"
gateway_bin="${GATEWAY_BIN:-$build_dir/server/app/copilot-gateway}"
outage="${OUTAGE:-70}"
ninja -C "$build_dir" copilot-gateway haufe-emulator copilot >/dev/null

BENCH_NAME=outage_recovery
# shellcheck source=tests/bench/bench_lib.sh
source tests/bench/bench_lib.sh

start_emulator "$build_dir"
cat >"$work/gateway.yaml" <<EOC
listen: "127.0.0.1:0"
metrics_listen: "127.0.0.1:0"
shutdown_delay: 0s
log_level: warning
upstream:
  base_url: "http://$upstream/agents"
  api_key_file: "$work/api-key"
identity: none
default_tenant:
  id: "ops"
  licence: "PI-OPS"
EOC
"$gateway_bin" --config "$work/gateway.yaml" >"$work/gateway.log" 2>&1 &
pids+=($!)
gateway="$(wait_for_address "$work/gateway.log" copilot-gateway)"

# One call: "OK", or the first line of its error (cut to 60 characters).
call() {
  if timeout 5 "$build_dir/client/copilot" --target "$gateway" assistants >/dev/null 2>"$work/err"; then
    echo OK
  else
    local line
    line="$(head -n1 "$work/err" | cut -c1-60)"
    echo "${line:-(no message: over the 5 s the script gives a call)}"
  fi
}

[ "$(call)" = OK ] || { echo "outage_recovery: the first call failed" >&2; exit 1; }
curl -sf -X POST -d '{"endpoint":"*","type":"status","status":503}' \
  "http://$upstream/_emulator/faults" >/dev/null
declare -A seen
start=$(date +%s)
while [ $(($(date +%s) - start)) -lt "$outage" ]; do
  result="$(call)"
  seen[$result]=$((${seen[$result]:-0} + 1))
done
echo "during the $outage s outage (503 for every request):"
for result in "${!seen[@]}"; do echo "  ${seen[$result]} x $result"; done
curl -sf -X DELETE "http://$upstream/_emulator/faults" >/dev/null
back=$(date +%s.%N)
last=""
while result="$(call)" && [ "$result" != OK ]; do
  last="$result"
  sleep 0.2
done
awk -v a="$back" -v b="$(date +%s.%N)" -v last="${last:-none}" 'BEGIN {
  printf "first OK %.1f s after the upstream came back (the last refusal before it: %s)\n", b - a, last
}'
