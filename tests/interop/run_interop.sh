#!/usr/bin/env bash
# Interop test of one generated client (client/<language>/) against a running gateway:
#
#   run_interop.sh LANGUAGE HAUFE_EMULATOR COPILOT_GATEWAY WORK_DIR
#
# LANGUAGE is python, go, java or node. Generates that language's code from proto/ into
# WORK_DIR/gen (with client/<language>/generate.sh), starts the emulator and the gateway on free
# loopback ports (bearer identity: a fresh token whose SHA-256 is in a config made from
# deploy/gateway.example.yaml, as scripts/demo.sh does), and runs the example program three
# times, checking its output:
#   1. the normal flow: a thread is created, the StreamRun answer arrives in >= 2 chunks,
#      Complete answers, GetThread of a made-up thread is NOT_FOUND with ErrorInfo reason
#      thread_not_found, and a wrong token is UNAUTHENTICATED with reason invalid_credentials;
#   2. with a 429 + Retry-After: 3 injected upstream on the first three CreateThread attempts
#      (the gateway waits out a short Retry-After and tries again, up to upstream.retry's
#      max_attempts, 3): the example reports RESOURCE_EXHAUSTED with ErrorInfo reason
#      rate_limit_gateway and RetryInfo 3s;
#   3. with CreateThread held upstream for 10 s and COPILOT_TIMEOUT=1: DEADLINE_EXCEEDED (the
#      example sets a deadline on its calls).
# Every process it starts is stopped on exit, on failure too. Each run uses its own WORK_DIR
# and ports, so the languages can run in parallel.
set -euo pipefail

if [ "$#" -ne 4 ]; then
  echo "usage: $0 python|go|java|node HAUFE_EMULATOR COPILOT_GATEWAY WORK_DIR" >&2
  exit 2
fi
lang="$1" emulator="$2" gateway_bin="$3" work="$4"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
assistant="7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a0001" # the emulator's "Haufe Copilot Tax" (streams)
start_seconds=$SECONDS

case "$lang" in
  python | go | java | node) ;;
  *)
    echo "unknown language: $lang" >&2
    exit 2
    ;;
esac

run_dir="$work/run"
gen="$work/gen"
rm -rf "$run_dir"
mkdir -p "$run_dir" "$gen"

pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

failures=0
fail() {
  echo "FAIL [$lang]: $*"
  failures=$((failures + 1))
}
pass() { echo "ok [$lang]: $*"; }

# Waits for the line "NAME listening on HOST:PORT" (the gRPC or HTTP port; not, e.g.,
# "copilot-gateway metrics listening on ...") and echoes HOST:PORT.
wait_for_address() {
  local log="$1" name="$2" addr
  for _ in $(seq 1 150); do
    if addr="$(sed -n "s/^$name listening on \([^ ]*\).*/\1/p" "$log" 2>/dev/null | sed -n 1p)" &&
      [ -n "$addr" ]; then
      echo "$addr"
      return 0
    fi
    sleep 0.1
  done
  echo "$name did not start; its output:" >&2
  cat "$log" >&2
  return 1
}

echo "== [$lang] generating code into $gen"
gen_start=$SECONDS
if ! timeout 180 "$repo/client/$lang/generate.sh" "$gen" >"$run_dir/generate.log" 2>&1; then
  cat "$run_dir/generate.log"
  echo "FAIL [$lang]: client/$lang/generate.sh failed"
  exit 1
fi
tail -n 3 "$run_dir/generate.log"
echo "generation took $((SECONDS - gen_start)) s"

case "$lang" in
  python) example=(env "PYTHONPATH=$gen" /usr/bin/python3 "$repo/client/python/copilot_example.py") ;;
  go | java) example=("$gen/bin/copilot-example") ;;
  node) example=(env "COPILOT_PROTO_DIR=$gen/proto" node "$repo/client/node/copilot_example.js") ;;
esac

echo "== [$lang] starting haufe-emulator and copilot-gateway"
upstream_key="interop-upstream-key-$$"
printf '%s' "$upstream_key" >"$run_dir/api-key"
"$emulator" --listen 127.0.0.1:0 --api-key "$upstream_key" --stream-delay-ms 10 \
  >"$run_dir/emulator.log" 2>&1 &
pids+=($!)
upstream="$(wait_for_address "$run_dir/emulator.log" haufe-emulator)"

token="$(openssl rand -hex 24)"
openssl rand -base64 48 >"$run_dir/signing-key"
openssl rand -base64 48 >"$run_dir/user-id-key"
example_digest="875ca15102495ea430c9af8e6eeb9a455e58e74d842b8bf852eed00b0482e739"
# Also, where the example config has these keys: no metrics listener (its fixed port would
# collide between parallel runs; this test does not use it) and no shutdown delay (a delay
# before draining, for load balancers, only slows the cleanup down).
sed -e "s|$example_digest|$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)|" \
  -e "s|/var/run/secrets/copilot/thread-signing-key|$run_dir/signing-key|" \
  -e "s|/var/run/secrets/copilot/user-id-key|$run_dir/user-id-key|" \
  -e 's|^metrics_listen: .*|metrics_listen: "off"|' \
  -e 's|^shutdown_delay: .*|shutdown_delay: 0s|' \
  "$repo/deploy/gateway.example.yaml" >"$run_dir/gateway.yaml"
grep -q "$run_dir/signing-key" "$run_dir/gateway.yaml" &&
  grep -q "$run_dir/user-id-key" "$run_dir/gateway.yaml" ||
  { echo "FAIL [$lang]: deploy/gateway.example.yaml changed shape; cannot make the config"; exit 1; }
HAUFE_LICENCE="PI-INTEROP-LICENCE" "$gateway_bin" --config "$run_dir/gateway.yaml" \
  --listen 127.0.0.1:0 --upstream-url "http://$upstream/agents" \
  --api-key-file "$run_dir/api-key" >"$run_dir/gateway.log" 2>&1 &
pids+=($!)
target="$(wait_for_address "$run_dir/gateway.log" copilot-gateway)"
echo "emulator http://$upstream, gateway $target"

# run_example NAME [ENV=VALUE...]: runs the example, output in $run_dir/NAME.out, exit code in
# $status.
run_example() {
  local name="$1"
  shift
  local run_start=$SECONDS
  status=0
  env COPILOT_TARGET="$target" COPILOT_TOKEN="$token" COPILOT_ASSISTANT="$assistant" \
    COPILOT_TIMEOUT=20 "$@" timeout 90 "${example[@]}" >"$run_dir/$name.out" 2>&1 || status=$?
  echo "-- example run '$name' (exit $status, $((SECONDS - run_start)) s):"
  sed 's/^/   | /' "$run_dir/$name.out"
}

# expect_line NAME ERE DESCRIPTION: the output of run NAME has a line matching ERE.
expect_line() {
  if grep -Eq "$2" "$run_dir/$1.out"; then pass "$3"; else fail "$3 (no line matching /$2/)"; fi
}

expect_status() {
  if [ "$status" -eq "$1" ]; then pass "exit status $1"; else fail "exit status $status, expected $1"; fi
}

add_fault() {
  curl -fsS -X POST --data "$1" "http://$upstream/_emulator/faults" >/dev/null
}

echo "== [$lang] 1. thread, message, StreamRun, Complete, two decoded errors"
run_example flow
expect_status 0
expect_line flow '^thread: th2_[A-Za-z0-9_-]+$' "CreateThread returned a thread handle"
expect_line flow '^message: [0-9a-f-]{36}$' "AddMessage returned the message ID"
chunks="$(grep -c '^chunk: ' "$run_dir/flow.out" || true)"
if [ "$chunks" -ge 2 ]; then pass "StreamRun streamed $chunks chunks"; else fail "StreamRun streamed $chunks chunks, expected >= 2"; fi
expect_line flow "^run: chunks=$chunks message_id=[0-9a-f-]{36} chars=[1-9][0-9]*$" \
  "StreamRun summary matches the chunks printed"
expect_line flow '^complete: .*[[:alnum:]]' "Complete answered with text"
expect_line flow '^error: NOT_FOUND reason=thread_not_found \(GetThread: ' \
  "GetThread of a made-up thread: NOT_FOUND, ErrorInfo reason thread_not_found"
expect_line flow '^error: UNAUTHENTICATED reason=invalid_credentials \(ListAssistants with a wrong token: ' \
  "wrong token: UNAUTHENTICATED, ErrorInfo reason invalid_credentials"
if grep -q "$token" "$run_dir/flow.out"; then fail "the example printed the token"; fi

echo "== [$lang] 2. RetryInfo: 429 with Retry-After: 3 on every attempt of the first CreateThread"
# The gateway retries a 429 whose Retry-After fits the deadline (3 attempts by default): the
# caller sees the third.
add_fault '{"endpoint": "create_thread", "times": 3, "type": "rate_limit", "retry_after": 3}'
run_example rate_limited
expect_status 1
expect_line rate_limited '^error: RESOURCE_EXHAUSTED reason=rate_limit_gateway retry_delay=3s \(CreateThread: ' \
  "RESOURCE_EXHAUSTED decoded with ErrorInfo reason and RetryInfo delay"

# The gateway holds that class of calls for the upstream's Retry-After (it answers the next ones
# RESOURCE_EXHAUSTED itself meanwhile): wait it out, as the RetryInfo says.
sleep 3.2

echo "== [$lang] 3. deadline: CreateThread held 10 s upstream, COPILOT_TIMEOUT=1"
add_fault '{"endpoint": "create_thread", "times": 1, "type": "latency", "delay_ms": 10000}'
deadline_start=$SECONDS
run_example deadline COPILOT_TIMEOUT=1
expect_status 1
expect_line deadline '^error: DEADLINE_EXCEEDED .*\(CreateThread: ' "the call's deadline ended it"
if [ $((SECONDS - deadline_start)) -le 8 ]; then pass "ended before the upstream answered"; else fail "took $((SECONDS - deadline_start)) s"; fi

echo "== [$lang] $((SECONDS - start_seconds)) s in all; logs and outputs in $run_dir"
if [ "$failures" -ne 0 ]; then
  echo "gateway log (last 30 lines):"
  tail -n 30 "$run_dir/gateway.log"
  echo "interop_$lang: $failures check(s) failed"
  exit 1
fi
echo "interop_$lang: all checks passed"
