#!/usr/bin/env bash
# The README's first command: installs what is needed, builds, starts the bundled upstream
# emulator and the gateway on free loopback ports, and asks a demo question through the
# `copilot` CLI, the answer streaming in. Everything it started is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${BUILD_DIR:-build/default}"
question="${1:-How is a company car taxed in Germany?}"
assistant="7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a0001"  # the emulator's "Haufe Copilot Tax"
# The Tax assistant requires a licence; the gateway adds it (deploy/gateway.example.yaml reads it
# from HAUFE_LICENCE). The emulator accepts any non-empty licence.
export HAUFE_LICENCE="${HAUFE_LICENCE:-PI-DEMO-LICENCE}"

scripts/install-deps.sh
echo "== build"
cmake -S . -B "$build_dir" -G Ninja >/dev/null
ninja -C "$build_dir" -j "${JOBS:-$(nproc)}" haufe-emulator copilot-gateway copilot

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Waits for a process to print "... listening on HOST:PORT" and echoes HOST:PORT.
wait_for_address() {
  local log="$1" name="$2"
  for _ in $(seq 1 100); do
    if addr="$(grep -o '^[a-z-]* listening on [^ ]*' "$log" 2>/dev/null | head -n1 | cut -d' ' -f4)" &&
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

echo "== starting the Haufe API emulator"
printf 'demo-upstream-key' >"$work/api-key"
"$build_dir/tests/emulator/haufe-emulator" --listen 127.0.0.1:0 --api-key demo-upstream-key \
  --stream-delay-ms 60 >"$work/emulator.log" 2>&1 &
pids+=($!)
upstream="$(wait_for_address "$work/emulator.log" haufe-emulator)"
echo "emulator: http://$upstream/agents"

echo "== starting copilot-gateway (tenant \"payroll\" of deploy/gateway.example.yaml)"
# The example config with this demo's own secrets: a fresh bearer token (the config holds only
# its SHA-256), a thread-signing key and a user-ID key.
token="$(openssl rand -hex 24)"
printf '%s' "$token" >"$work/token"
openssl rand -base64 48 >"$work/signing-key"
openssl rand -base64 48 >"$work/user-id-key"
sed -e "s|875ca15102495ea430c9af8e6eeb9a455e58e74d842b8bf852eed00b0482e739|$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)|" \
  -e "s|/var/run/secrets/copilot/thread-signing-key|$work/signing-key|" \
  -e "s|/var/run/secrets/copilot/user-id-key|$work/user-id-key|" \
  -e 's|^metrics_listen: .*|metrics_listen: "127.0.0.1:0"|' -e 's|^shutdown_delay: .*|shutdown_delay: 0s|' \
  deploy/gateway.example.yaml >"$work/gateway.yaml"
"$build_dir/server/app/copilot-gateway" --config "$work/gateway.yaml" \
  --listen 127.0.0.1:0 --upstream-url "http://$upstream/agents" \
  --api-key-file "$work/api-key" >"$work/gateway.log" 2>&1 &
pids+=($!)
gateway="$(wait_for_address "$work/gateway.log" copilot-gateway)"
echo "gateway: $gateway"

echo "== copilot ask: $question"
"$build_dir/client/copilot" --target "$gateway" --token-file "$work/token" \
  ask --assistant "$assistant" "$question"
echo "== demo done (the gateway and the emulator are stopped now)"
