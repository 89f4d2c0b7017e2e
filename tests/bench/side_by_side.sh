#!/usr/bin/env bash
# The cost of the gateway next to an HTTP proxy hop, measured in one run (issue #17): the same
# chat completion three ways against one haufe-emulator, with h2load (Debian nghttp2-client):
#   direct   REST straight to the emulator (HTTP/1.1)
#   nginx    REST through nginx proxy_pass (Debian nginx-light, this script's own process on
#            loopback, keep-alive to the upstream)
#   gateway  gRPC Complete through copilot-gateway (identity none, budget windows off)
# each at concurrency 1 and 64. Prints, per path and concurrency: requests/s, latency p50/p99 and
# what the hop adds to the direct path's, and the hop's CPU time per call (user + system of its
# processes, from /proc). h2load cannot read gRPC trailers, so every gateway call is checked
# through the gateway's grpc_server_handled_total{grpc_code="OK"} and the emulator's request
# count; the script fails when a call of any path did not succeed. Then the upstream connections
# each hop opened during its c=64 run (the emulator's accepted_total; right after 1,000 calls at
# c=64 a steady state opens none), and
# the first chunk of a streamed chat completion (tests/bench/gateway/first_chunk_bench: NDJSON
# direct and through nginx, gRPC StreamComplete through the gateway, one call at a time,
# CALLS_STREAM of each (default 300), the emulator pacing its chunks STREAM_DELAY_MS apart,
# default 1; and gRPC alone, grpc_floor_server's StreamComplete writing its first chunk at once,
# to split the gateway's first chunk into the upstream's time, gRPC's and its own). Last, gRPC
# alone (tests/bench/gateway/grpc_floor_server: Complete answered with a fixed message of about
# the gateway's answer's size, no upstream, no tenant, no JSON) at c=1 and c=64, three ways: the
# callback API finishing inline, the callback API finishing from a thread of its own (the
# gateway's shape), and the completion-queue API: what of the gateway's CPU per call is gRPC's
# own; and a fourth, callback-curl, whose thread is a libcurl upstream loop as the gateway's
# sending nginx's REST call: gRPC and libcurl with nothing of the gateway's between them, the
# floor under the issue's goals with this stack.
#
#   tests/bench/side_by_side.sh                 # 3,000 calls at c=1, 20,000 at c=64 per path
#   CALLS_C1=500 CALLS_C64=2000 CALLS_STREAM=100 tests/bench/side_by_side.sh   # a quick run
# BUILD_DIR (default build/default) holds the binaries; they are built if missing.
# GATEWAY_BIN=<binary>: the gateway to measure (default BUILD_DIR's), e.g. an earlier commit's
# build, to compare two in alternating runs (a relative path is taken from where the script is
# started).
# GATEWAY_LD_PRELOAD=<library>: the gateway runs with it preloaded (e.g. another malloc).
# EVENT_LOOPS=<n>: the gateway's upstream.event_loops (default: its own, one per usable CPU).
# PROFILE_OUT=<file>: also records the gateway with `perf record -g` (Debian linux-perf) during
# its c=64 run and writes where its CPU time went (by library, by function, by thread, then the
# upstream loops alone) to <file>, and the recording itself to <file>.data (`perf report -i`).
set -euo pipefail
[ -n "${GATEWAY_BIN:-}" ] && GATEWAY_BIN="$(realpath "$GATEWAY_BIN")"
cd "$(dirname "$0")/../.."
build_dir="${BUILD_DIR:-build/default}"
calls_c1="${CALLS_C1:-3000}"
calls_c64="${CALLS_C64:-20000}"
calls_stream="${CALLS_STREAM:-300}"
warmup_c64=$((calls_c64 < 1000 ? calls_c64 : 1000))

for tool in h2load nginx protoc; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || {
    echo "side_by_side: $tool is missing (apt-get install nghttp2-client nginx-light protobuf-compiler)" >&2
    exit 2
  }
done
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
first_chunk_bench="$build_dir/tests/bench/gateway/first_chunk_bench"
floor_server="$build_dir/tests/bench/gateway/grpc_floor_server"
if [ ! -x "$build_dir/server/app/copilot-gateway" ] || [ ! -x "$build_dir/tests/emulator/haufe-emulator" ] ||
   [ ! -x "$first_chunk_bench" ] || [ ! -x "$floor_server" ]; then
  ninja -C "$build_dir" copilot-gateway haufe-emulator first_chunk_bench grpc_floor_server >/dev/null
fi

BENCH_NAME=side_by_side
# shellcheck source=tests/bench/bench_lib.sh
source tests/bench/bench_lib.sh
free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# CPU seconds (user + system) used so far by the processes listed.
cpu_seconds() {
  local ticks=0 pid fields
  for pid in "$@"; do
    read -r -a fields <"/proc/$pid/stat"
    ticks=$((ticks + fields[13] + fields[14]))
  done
  awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.3f", t / hz }'
}
context_switches() {  # pids: the voluntary and involuntary context switches of all their threads
  cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^(non)?voluntary_ctxt_switches/ { n += $2 } END { print n + 0 }'
}
loop_comms() {  # perf.data: the upstream loops' thread names in it, comma-separated
  perf report -i "$1" --stdio --no-children --sort comm -g none 2>/dev/null |
    grep -o 'curl-loop-[0-9]*' | sort -u | paste -sd, -
}

metric() {  # url series: its value (0 when absent)
  curl -s "$1" | awk -v s="$2" 'index($0, s " ") == 1 { v = $NF } END { print v + 0 }'
}

echo "== starting the emulator, nginx and the gateway"
start_emulator "$build_dir"

nginx_port="$(free_port)"
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  upstream emulator { server $upstream; keepalive 256; }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass http://emulator;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
    # Streams pass each chunk on as it comes (nginx's usual setting for streamed answers).
    location /agents/v1/chat/completions/stream {
      proxy_pass http://emulator;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
EOF
"$nginx_bin" -p "$work/nginx" -c "$work/nginx/nginx.conf" 2>"$work/nginx/stderr.log" &
nginx_master=$!
pids+=("$nginx_master")

write_gateway_config "$work/gateway.yaml" "$upstream" "$work/api-key" "${EVENT_LOOPS:-0}"
env ${GATEWAY_LD_PRELOAD:+LD_PRELOAD="$GATEWAY_LD_PRELOAD"} \
  "${GATEWAY_BIN:-$build_dir/server/app/copilot-gateway}" --config "$work/gateway.yaml" >"$work/gateway.log" 2>&1 &
gateway_pid=$!
pids+=("$gateway_pid")
gateway="$(wait_for_address "$work/gateway.log" copilot-gateway)"
metrics_addr="$(grep -o 'metrics listening on [^ ]*' "$work/gateway.log" | head -n1 | cut -d' ' -f4)"
for _ in $(seq 1 50); do
  nginx_workers=($(pgrep -P "$nginx_master" || true))
  [ "${#nginx_workers[@]}" -gt 0 ] && curl -s -o /dev/null "http://127.0.0.1:$nginx_port/" && break
  sleep 0.1
done
if [ "${#nginx_workers[@]}" -eq 0 ]; then
  echo "side_by_side: nginx did not start:" >&2
  cat "$work/nginx/stderr.log" "$work/nginx/error.log" >&2 2>/dev/null || true
  exit 1
fi

# The requests: the same question as JSON for REST, as a framed gRPC message for the gateway.
printf '{"assistant_id":"%s","messages":[{"role":"user","content":"%s"}]}' \
  "$hr_assistant" "$question" >"$work/chat.json"
write_complete_request "$work" "$hr_assistant" "$question"

# run NAME CONCURRENCY CALLS: one h2load run; prints "req/s p50_ms p99_ms cpu_s switches" of the
# path (switches: the hop's context switches during the run, its own threads').
run() {
  local name=$1 c=$2 n=$3 log="$work/$1-c$2.log" cpu_before cpu_after switches_before=0 switches_after=0 pid
  local -a args=(-n "$n" -c "$c" -m 1 -t 1 --log-file="$log")
  case "$name" in
    direct) args+=(--h1 -H "api-key: bench-upstream-key" -H "content-type: application/json"
                   -d "$work/chat.json" "http://$upstream/agents/v1/chat/completions") ;;
    nginx) args+=(--h1 -H "api-key: bench-upstream-key" -H "content-type: application/json"
                  -d "$work/chat.json" "http://127.0.0.1:$nginx_port/agents/v1/chat/completions") ;;
    gateway) args+=(-H "content-type: application/grpc" -H "te: trailers"
                    -d "$work/complete.grpc" "http://$gateway/copilot.v1.CopilotService/Complete") ;;
    floor-*) args+=(-H "content-type: application/grpc" -H "te: trailers"
                    -d "$work/complete.grpc" "http://$floor_addr/copilot.v1.CopilotService/Complete") ;;
  esac
  local -a hop=()
  case "$name" in
    nginx) hop=("${nginx_workers[@]}") ;;
    gateway) hop=("$gateway_pid") ;;
    floor-*) hop=("$floor_pid") ;;
  esac
  cpu_before=0
  [ "${#hop[@]}" -gt 0 ] && cpu_before="$(cpu_seconds "${hop[@]}")"
  for pid in "${hop[@]}"; do switches_before=$((switches_before + $(context_switches "$pid"))); done
  local perf_pid=""
  if [ -n "${PROFILE_OUT:-}" ] && [ "$name" = gateway ] && [ "$c" = 64 ] && [ "$n" = "$calls_c64" ]; then
    perf record -q -g -F 999 -p "$gateway_pid" -o "$work/perf.data" 2>/dev/null &
    perf_pid=$!
    sleep 0.5
  fi
  h2load "${args[@]}" >"$work/$name-c$c.out" 2>&1 || { cat "$work/$name-c$c.out" >&2; return 1; }
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
    {
      echo "# perf record -g -F 999 of copilot-gateway during $n Complete calls at c=64"
      perf report -i "$work/perf.data" --stdio --no-children --sort dso -g none --percent-limit 0.5 2>/dev/null | grep -v '^$'
      perf report -i "$work/perf.data" --stdio --no-children --sort dso,symbol -g none --percent-limit 0.4 2>/dev/null | grep -v '^$'
      echo "# by thread (the gateway names its upstream loops and JSON decoders)"
      perf report -i "$work/perf.data" --stdio --no-children --sort comm -g none 2>/dev/null | grep -v '^$'
      echo "# the upstream loops alone"
      perf report -i "$work/perf.data" --stdio --no-children --comms "$(loop_comms "$work/perf.data")" \
        --sort dso,symbol -g none --percent-limit 0.5 2>/dev/null | grep -v '^$'
    } >"$PROFILE_OUT"
    cp "$work/perf.data" "$PROFILE_OUT.data"  # for `perf report -i` with other views
  fi
  cpu_after=0
  [ "${#hop[@]}" -gt 0 ] && cpu_after="$(cpu_seconds "${hop[@]}")"
  for pid in "${hop[@]}"; do switches_after=$((switches_after + $(context_switches "$pid"))); done
  local succeeded rps
  succeeded="$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' "$work/$name-c$c.out")"
  rps="$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$work/$name-c$c.out")"
  if [ "$succeeded" != "$n" ]; then
    echo "side_by_side: $name at c=$c: $succeeded of $n succeeded" >&2
    cat "$work/$name-c$c.out" >&2
    return 1
  fi
  awk -F'\t' '$2 == 200 { print $3 }' "$log" | sort -n |
    awk -v rps="$rps" -v cpu="$(awk -v a="$cpu_before" -v b="$cpu_after" 'BEGIN { print b - a }')" \
      -v switches="$((switches_after - switches_before))" '
      { d[NR] = $1 }
      END {
        i50 = int(NR * 0.50); i99 = int(NR * 0.99); if (i50 < 1) i50 = 1; if (i99 < 1) i99 = 1
        printf "%s %.3f %.3f %s %s\n", rps, d[i50] / 1000, d[i99] / 1000, cpu, switches
      }'
}

# "requests accepted": the emulator's requests and accepted connections so far, its own
# connection for this query included.
emulator_stats() {
  curl -sf "http://$upstream/_emulator/stats" |
    /usr/bin/python3 -c 'import json,sys; s = json.load(sys.stdin); print(s["requests_total"], s["accepted_total"])'
}
# "le count" lines of the gateway's copilot_gateway_overhead_seconds histogram for Complete.
overhead_buckets() {
  curl -s "http://$metrics_addr/metrics" | awk '
    index($0, "copilot_gateway_overhead_seconds_bucket{grpc_method=\"Complete\",le=\"") == 1 {
      le = $0; sub(/.*le="/, "", le); sub(/".*/, "", le); print le, $NF
    }'
}
ok_calls() {
  metric "http://$metrics_addr/metrics" \
    'grpc_server_handled_total{grpc_code="OK",grpc_method="Complete",grpc_service="copilot.v1.CopilotService",grpc_type="unary"}'
}

echo "== warm-up"
run direct 8 500 >/dev/null
run nginx 8 500 >/dev/null
run gateway 8 500 >/dev/null

declare -A result opened
for c in 1 64; do
  n=$([ "$c" = 1 ] && echo "$calls_c1" || echo "$calls_c64")
  for path in direct nginx gateway; do
    # Right before each c=64 run, 1,000 calls at c=64 (fewer in a shorter run) open what it needs (the gateway reuses no
    # connection idle for over upstream.max_idle_connection_age, 4 s): what the run then opens
    # upstream is steady-state churn.
    [ "$c" = 64 ] && run "$path" 64 "$warmup_c64" >/dev/null
    read -r before_upstream before_accepted <<<"$(emulator_stats)"
    before_ok="$(ok_calls)"
    [ "$path" = gateway ] && overhead_buckets >"$work/overhead-before-$c"
    echo "== $path, c=$c, $n calls"
    result[$path-$c]="$(run "$path" "$c" "$n")"
    read -r after_upstream after_accepted <<<"$(emulator_stats)"
    got_upstream=$((after_upstream - before_upstream))
    # Less the connection of the second stats query (the first one's is in its own figure).
    opened[$path-$c]=$((after_accepted - before_accepted - 1))
    if [ "$got_upstream" != "$n" ]; then
      echo "side_by_side: $path at c=$c: the emulator got $got_upstream requests, not $n" >&2
      exit 1
    fi
    if [ "$path" = gateway ]; then
      got_ok="$(awk -v a="$before_ok" -v b="$(ok_calls)" 'BEGIN { print b - a }')"
      overhead_buckets >"$work/overhead-after-$c"
      if [ "$got_ok" != "$n" ]; then
        echo "side_by_side: gateway at c=$c: $got_ok of $n calls ended OK (grpc_server_handled_total)" >&2
        exit 1
      fi
    fi
  done
done

# start_floor NAME ARGS...: grpc_floor_server with ARGS (log $work/floor-NAME.log); sets
# floor_pid and floor_addr.
start_floor() {
  local name=$1
  shift
  "$floor_server" --threads "$(nproc)" "$@" >"$work/floor-$name.log" 2>&1 &
  floor_pid=$!
  pids+=("$floor_pid")
  floor_addr="$(wait_for_address "$work/floor-$name.log" grpc_floor_server)"
}
# stop_floor NAME COUNT EXPECTED: stops it; fails unless its exit line COUNT ("served" unary
# calls, "streams") says EXPECTED.
stop_floor() {
  local name=$1 count=$2 expected=$3 got
  kill -TERM "$floor_pid"
  wait "$floor_pid" || { echo "side_by_side: grpc_floor_server ($name) failed" >&2; exit 1; }
  forget_pid "$floor_pid"
  got="$(sed -n "s/^$count //p" "$work/floor-$name.log")"
  if [ "$got" != "$expected" ]; then
    echo "side_by_side: grpc_floor_server ($name) $count $got, not $expected" >&2
    exit 1
  fi
}

echo "== first chunk of a streamed completion, $calls_stream calls of each path, one at a time"
# Chunks 1 ms apart: the first one arrives before the rest, so a hop that held the stream back
# would show (with 0 the whole answer comes in one write).
curl -sf -X POST -d "{\"stream_delay_ms\": ${STREAM_DELAY_MS:-1}}" "http://$upstream/_emulator/config" >/dev/null
# gRPC alone takes its turn too: a StreamComplete whose first chunk the floor server writes at
# once, the rest paced as the emulator paces them.
start_floor stream --mode callback --stream-delay-ms "${STREAM_DELAY_MS:-1}"
stream_warmup=$((calls_stream < 50 ? calls_stream : 50))
"$first_chunk_bench" --direct "http://$upstream/agents" --proxy "http://127.0.0.1:$nginx_port/agents" \
  --gateway "$gateway" --api-key bench-upstream-key --assistant "$hr_assistant" \
  --calls "$calls_stream" --warmup "$stream_warmup" --floor "$floor_addr" >"$work/first-chunk.out" ||
  { echo "side_by_side: first_chunk_bench failed" >&2; exit 1; }
stop_floor stream streams "$((stream_warmup + calls_stream))"

echo "== gRPC alone (grpc_floor_server), c=1 and c=64"
floor_modes=(callback callback-hop cq callback-curl)
for mode in "${floor_modes[@]}"; do
  floor_args=(--mode "$mode")
  # gRPC and libcurl with nothing of the gateway's between them: the same REST call as nginx's.
  [ "$mode" = callback-curl ] &&
    floor_args+=(--upstream "http://$upstream/agents/v1/chat/completions"
                 --upstream-body "$work/chat.json" --api-key bench-upstream-key)
  start_floor "$mode" "${floor_args[@]}"
  run "floor-$mode" 64 "$warmup_c64" >/dev/null
  result[floor-$mode-1]="$(run "floor-$mode" 1 "$calls_c1")"
  result[floor-$mode-64]="$(run "floor-$mode" 64 "$calls_c64")"
  stop_floor "$mode" served "$((warmup_c64 + calls_c1 + calls_c64))"
done

echo
echo "side by side at $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores, every call checked:"
printf '| %-8s | %3s | %9s | %8s | %8s | %12s | %12s | %12s | %15s |\n' path c 'req/s' 'p50 ms' \
  'p99 ms' 'p50 added' 'p99 added' 'CPU/call us' 'switches/call'
printf '|%s|\n' '----------|-----|-----------|----------|----------|--------------|--------------|--------------|-----------------'
for c in 1 64; do
  n=$([ "$c" = 1 ] && echo "$calls_c1" || echo "$calls_c64")
  read -r d_rps d_p50 d_p99 _ <<<"${result[direct-$c]}"
  for path in direct nginx gateway; do
    read -r rps p50 p99 cpu switches <<<"${result[$path-$c]}"
    awk -v path="$path" -v c="$c" -v n="$n" -v rps="$rps" -v p50="$p50" -v p99="$p99" -v cpu="$cpu" \
      -v switches="$switches" \
      -v dp50="$d_p50" -v dp99="$d_p99" 'BEGIN {
        added50 = path == "direct" ? "-" : sprintf("%.3f", p50 - dp50)
        added99 = path == "direct" ? "-" : sprintf("%.3f", p99 - dp99)
        percall = path == "direct" ? "-" : sprintf("%.0f", cpu * 1e6 / n)
        switched = path == "direct" ? "-" : sprintf("%.2f", switches / n)
        printf "| %-8s | %3s | %9.0f | %8.3f | %8.3f | %12s | %12s | %12s | %15s |\n", path, c, rps, p50, p99, added50, added99, percall, switched
      }'
  done
done
read -r n_rps _ <<<"${result[nginx-64]}"
read -r g_rps _ <<<"${result[gateway-64]}"
read -r _ _ _ n_cpu _ <<<"${result[nginx-64]}"
read -r _ _ _ g_cpu _ <<<"${result[gateway-64]}"
awk -v g="$g_rps" -v n="$n_rps" -v gc="$g_cpu" -v nc="$n_cpu" 'BEGIN {
  printf "gateway / nginx at c=64: throughput %.2fx, CPU per call %.1fx\n", g / n, gc / nc
}'
# The gateway's own figure for its cost (copilot_gateway_overhead_seconds: a call's time, to
# gRPC's end of it, less libcurl's time for its upstream request, Complete's calls of each run)
# next to what the hop added at p50, which also holds gRPC's framing on both sides of the wire:
# the bucket holding the metric's p50 should hold the added p50 too.
for c in 1 64; do
  read -r _ d_p50 _ <<<"${result[direct-$c]}"
  read -r _ g_p50 _ <<<"${result[gateway-$c]}"
  paste -d' ' "$work/overhead-before-$c" "$work/overhead-after-$c" |
    awk -v c="$c" -v added="$(awk -v a="$g_p50" -v b="$d_p50" 'BEGIN { print a - b }')" '
      { le[NR] = $1; n[NR] = $4 - $2 }
      END {
        total = n[NR]; lo = 0
        for (i = 1; i <= NR; i++) {
          if (n[i] >= total / 2) { hi = le[i]; break }
          lo = le[i]
        }
        in_bucket = added / 1000 > lo && (hi == "+Inf" || added / 1000 <= hi)
        printf "copilot_gateway_overhead_seconds at c=%s: p50 in (%g, %s] ms over %d calls; added p50 %.3f ms: %s\n",
          c, lo * 1000, hi == "+Inf" ? "inf" : hi * 1000, total, added,
          in_bucket ? "the same bucket" : "NOT the same bucket"
      }'
done
echo "upstream connections opened during the c=64 run ($calls_c64 calls, right after $warmup_c64 at c=64; steady state opens none): nginx ${opened[nginx-64]}, gateway ${opened[gateway-64]}"
awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[$2 "," kv[1]] = kv[2] } }
  { path[NR] = $2 }
  END {
    printf "first chunk of a stream, %s calls: direct p50 %.3f ms, p99 %.3f;", v["direct,calls"] == "" ? "?" : v["direct,calls"], v["direct,p50_ms"], v["direct,p99_ms"]
    printf " nginx added p50 %.3f, p99 %.3f; gateway added p50 %.3f, p99 %.3f: %s\n",
      v["proxy,added_p50_ms"], v["proxy,added_p99_ms"], v["gateway,added_p50_ms"], v["gateway,added_p99_ms"],
      v["gateway,added_p50_ms"] <= v["proxy,added_p50_ms"] ? "the gateway adds no more than nginx at p50" : "the gateway adds more than nginx at p50"
    printf "  gRPC alone (grpc_floor_server, no upstream: the first chunk written at once): p50 %.3f ms, p99 %.3f; so of the gateway'"'"'s %.3f ms at p50, %.3f are the upstream'"'"'s (direct) and %.3f gRPC'"'"'s floor, %.3f the gateway'"'"'s own path\n",
      v["floor,p50_ms"], v["floor,p99_ms"], v["gateway,p50_ms"], v["direct,p50_ms"], v["floor,p50_ms"],
      v["gateway,p50_ms"] - v["direct,p50_ms"] - v["floor,p50_ms"]
  }' "$work/first-chunk.out"
data_per_call() {  # h2load output, calls: the response bytes (DATA frames) per call
  sed -n 's/^traffic: .*, [0-9.]*[KMG]*B (\([0-9]*\)) data.*/\1/p' "$1" | awk -v n="$2" '{ printf "%.0f", $1 / n }'
}
echo "gRPC alone (grpc_floor_server, no upstream; the gateway's answer $(data_per_call "$work/gateway-c64.out" "$calls_c64") bytes a call on the wire, the floor's $(data_per_call "$work/floor-callback-c64.out" "$calls_c64")):"
printf '| %-22s | %9s | %9s | %12s | %12s | %13s | %14s |\n' server 'c=1 req/s' 'c=64 req/s' \
  'c=1 CPU us' 'c=64 CPU us' 'c=1 switches' 'c=64 switches'
printf '|%s|\n' '------------------------|-----------|------------|--------------|--------------|---------------|----------------'
for mode in "${floor_modes[@]}"; do
  read -r rps1 _ _ cpu1 switches1 <<<"${result[floor-$mode-1]}"
  read -r rps64 _ _ cpu64 switches64 <<<"${result[floor-$mode-64]}"
  awk -v m="$mode" -v r1="$rps1" -v r64="$rps64" -v c1="$cpu1" -v c64="$cpu64" -v n1="$calls_c1" -v n64="$calls_c64" \
    -v s1="$switches1" -v s64="$switches64" 'BEGIN {
    printf "| %-22s | %9.0f | %10.0f | %12.0f | %12.0f | %13.2f | %14.2f |\n", m, r1, r64, c1 * 1e6 / n1, c64 * 1e6 / n64, s1 / n1, s64 / n64
  }'
done
read -r _ _ _ hop_cpu _ <<<"${result[floor-callback-hop-64]}"
awk -v g="$g_cpu" -v f="$hop_cpu" -v n="$calls_c64" 'BEGIN {
  printf "gateway CPU per call at c=64: %.0f us, of which gRPC alone in the gateway'"'"'s shape (callback-hop) %.0f us; the gateway'"'"'s own path %.0f us\n", g * 1e6 / n, f * 1e6 / n, (g - f) * 1e6 / n
}'
# The floor under the goals: gRPC and libcurl alone (callback-curl), next to the gateway and nginx.
read -r _ c1_p50 _ c1_cpu _ <<<"${result[floor-callback-curl-1]}"
read -r _ _ _ g1_cpu _ <<<"${result[gateway-1]}"
read -r c64_rps _ _ c64_cpu _ <<<"${result[floor-callback-curl-64]}"
read -r _ d1_p50 _ <<<"${result[direct-1]}"
read -r _ g1_p50 _ <<<"${result[gateway-1]}"
read -r _ n1_p50 _ <<<"${result[nginx-1]}"
awk -v g="$g_cpu" -v f="$c64_cpu" -v n="$calls_c64" -v fr="$c64_rps" -v nr="$n_rps" -v gr="$g_rps" \
  -v f1="$c1_p50" -v g1="$g1_p50" -v n1="$n1_p50" -v d1="$d1_p50" -v fc1="$c1_cpu" \
  -v gc1="$g1_cpu" -v m="$calls_c1" 'BEGIN {
  printf "gRPC and libcurl alone (callback-curl: the same REST call as nginx'"'"'s, nothing of the gateway'"'"'s between): CPU per call at c=64 %.0f us (gateway %.0f), at c=1 %.0f us (gateway %.0f); throughput at c=64 %.2fx nginx'"'"'s (gateway %.2fx); p50 added at c=1 %.3f ms (gateway %.3f, nginx %.3f)\n",
    f * 1e6 / n, g * 1e6 / n, fc1 * 1e6 / m, gc1 * 1e6 / m, fr / nr, gr / nr, f1 - d1, g1 - d1, n1 - d1
}'
