# Shared by the benchmark scripts (side_by_side.sh, instructions_per_call.sh); sourced, with
# BENCH_NAME set to the script's name for its messages. Gives:
#   $work, pids   a temporary directory and the background processes, both cleaned up at exit
#   hr_assistant, question   the emulator's HR assistant (no licence) and the question asked
#   start_emulator BUILD_DIR   starts haufe-emulator (API key in $work/api-key) and sets
#                              $upstream to its HOST:PORT
#   forget_pid PID   drops PID from pids once it has been waited for (so cleanup never kills
#                    another process that got the number since)
#   wait_for_address LOG NAME [SECONDS]   echoes HOST:PORT once LOG has "... listening on"
#   write_gateway_config FILE UPSTREAM API_KEY_FILE [EVENT_LOOPS]   the gateway as benchmarked
#   write_complete_request DIR ASSISTANT QUESTION   DIR/complete.pb and DIR/complete.grpc (the
#                                                   CompleteRequest framed for h2load)
hr_assistant="7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a0002"
question="How many days of paid leave does an employee get?"
work="$(mktemp -d)"
pids=()
bench_cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap bench_cleanup EXIT

forget_pid() {  # pid
  local -a kept=()
  local pid
  for pid in "${pids[@]}"; do [ "$pid" = "$1" ] || kept+=("$pid"); done
  pids=("${kept[@]}")
}

wait_for_address() {  # log name [seconds]
  local addr
  for _ in $(seq 1 $((${3:-10} * 10))); do
    if addr="$(grep -o '^[a-z-]* listening on [^ ]*' "$1" 2>/dev/null | head -n1 | cut -d' ' -f4)" &&
      [ -n "$addr" ]; then
      echo "$addr"
      return 0
    fi
    sleep 0.1
  done
  echo "$BENCH_NAME: $2 did not start:" >&2
  cat "$1" >&2
  return 1
}

# One tenant, no identity, no upstream budget windows: the gateway's own cost per call.
write_gateway_config() {  # file upstream api_key_file [event_loops]
  cat >"$1" <<EOC
listen: "127.0.0.1:0"
metrics_listen: "127.0.0.1:0"
shutdown_delay: 0s
log_level: warning
upstream:
  base_url: "http://$2/agents"
  api_key_file: "$3"
  event_loops: ${4:-0}
identity: none
upstream_budget: {answer_per_second: 0, answer_per_minute: 0, other_per_second: 0, other_per_minute: 0}
default_tenant:
  id: "bench"
  licence: "PI-BENCH"
EOC
}

write_complete_request() {  # dir assistant question
  printf 'assistant_id: "%s" messages { role: ROLE_USER content: "%s" }' "$2" "$3" |
    protoc -Iproto -I/usr/include --encode=copilot.v1.CompleteRequest copilot/v1/copilot_service.proto \
      >"$1/complete.pb"
  /usr/bin/python3 - "$1/complete.pb" "$1/complete.grpc" <<'EOP'
import struct, sys
body = open(sys.argv[1], "rb").read()
open(sys.argv[2], "wb").write(b"\0" + struct.pack(">I", len(body)) + body)
EOP
}

start_emulator() {  # build_dir
  printf 'bench-upstream-key' >"$work/api-key"
  "$1/tests/emulator/haufe-emulator" --listen 127.0.0.1:0 --api-key bench-upstream-key \
    >"$work/emulator.log" 2>&1 &
  pids+=($!)
  upstream="$(wait_for_address "$work/emulator.log" haufe-emulator)"
}
