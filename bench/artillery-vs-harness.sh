#!/usr/bin/env bash
# Side by side on one machine, one run each, the same reference server:
# Artillery (WebSocket engine) and the harness open the same number of
# sockets in the same conversations, send the same message rate and receive
# the same broadcast traffic. Prints CPU-seconds and peak RSS of each load
# generator per 1,000 sockets and per 10,000 received messages.
#
#   bench/artillery-vs-harness.sh [SOCKETS] [SENDS_PER_SECOND] [SECONDS]
#   (defaults: 2000 sockets, 100 sends/s, 120 s of traffic)
#
# Needs: cargo, node/npm (Artillery is installed into bench/artillery on
# first use), redis-server on PATH. Loopback only. Results go to
# $OUT (default /tmp/artillery-vs-harness).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
sockets=${1:-2000}
rate=${2:-100}
seconds=${3:-120}
ramp=20
out=${OUT:-/tmp/artillery-vs-harness}
per_conversation=20 # 10 member users x 2 devices, as in the harness scenario
if (( sockets % per_conversation != 0 )); then
  echo "SOCKETS must be a multiple of $per_conversation" >&2
  exit 3
fi
rm -rf "$out" && mkdir -p "$out"

[[ -n "${SKIP_BUILD:-}" ]] || (cd "$root" && cargo build --release -q -p harness -p server)
if [[ ! -x "$root/bench/artillery/node_modules/.bin/artillery" ]]; then
  # Artillery's Playwright engine would download browsers; not needed here.
  (cd "$root/bench/artillery" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m { print $2 }'; }

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

# Starts a fresh Redis and a fresh server; sets redis_port, port, server_pid.
start_stack() {
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no >"$out/redis-$1.log" 2>&1 &
  pids+=($!)
  port=$(free_port)
  "$root/target/release/server" --listen "127.0.0.1:$port" \
    --redis-url "redis://127.0.0.1:$redis_port" --insecure-no-auth \
    >"$out/server-$1.log" 2>&1 &
  server_pid=$!
  pids+=($server_pid)
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && return 0
    sleep 0.1
  done
  echo "server did not start: $out/server-$1.log" >&2
  exit 3
}

# Samples the server's open sockets every second; the peak goes to $1.
watch_sockets() {
  local peak=0 now
  while kill -0 "$server_pid" 2>/dev/null; do
    now=$(metric "$port" chat_sockets_open || true)
    [[ -n "$now" ]] && (( ${now%.*} > peak )) && peak=${now%.*} && echo "$peak" >"$1"
    sleep 1
  done
}

# The device table both tools use: socket i is device i%2 of user i/2, in
# conversation i/20.
csv="$out/devices.csv"
echo "conversation_id,user_id,client_id" >"$csv"
for ((i = 0; i < sockets; i++)); do
  printf '%08x-0000-4000-8000-%012x,%08x-0001-4000-8000-%012x,%08x-0002-4000-8000-%012x\n' \
    0 $((i / 20)) 0 $((i / 2)) 0 "$i" >>"$csv"
done

think=$(python3 -c "print($sockets / $rate)")
# The harness sends through its ramp-up too: match its total.
sends_per_socket=$(python3 -c "print(max(1, round(($seconds + $ramp) * $rate / $sockets)))")

run_artillery() {
  # Artillery reads the payload relative to the script: run a copy in $out.
  cp "$root/bench/artillery/chat.yml" "$root/bench/artillery/processor.js" "$out/"
  (cd "$out" && TARGET="ws://127.0.0.1:$port/ws" DEVICES_CSV=devices.csv \
    RAMP_SECONDS=$ramp SOCKETS="$sockets" THINK_SECONDS="$think" \
    SENDS_PER_SOCKET="$sends_per_socket" \
    /usr/bin/time -f '%e %U %S %M' -o "$out/time-artillery" \
    "$root/bench/artillery/node_modules/.bin/artillery" run --quiet chat.yml)
}

run_harness() {
  sed -e "s/@USERS@/$((sockets / 2))/" -e "s/@CONVERSATIONS@/$((sockets / 20))/" \
    -e "s/@RATE@/$rate/" -e "s/@SECONDS@/$seconds/" -e "s/@RAMP@/$ramp/" \
    "$root/bench/artillery/harness-side.toml.in" >"$out/harness-side.toml"
  /usr/bin/time -f '%e %U %S %M' -o "$out/time-harness" \
    "$root/target/release/harness" run "$out/harness-side.toml" --quiet --seed 1 \
    --target "ws://127.0.0.1:$port/ws" --redis-url "redis://127.0.0.1:$redis_port" \
    --out "$out/harness-runs"
}

run_side() { # name
  local name=$1
  start_stack "$name"
  local before_cpu delivered
  before_cpu=$(cpu_ticks "$server_pid")
  watch_sockets "$out/peak-sockets-$name" &
  local watcher=$!
  "run_$name" >"$out/$name.log" 2>&1 || echo "$name exited $? (see $out/$name.log)"
  delivered=$(( $(metric "$port" chat_messages_delivered_total) + $(metric "$port" chat_messages_replayed_total) ))
  echo "$delivered $(( $(cpu_ticks "$server_pid") - before_cpu ))" >"$out/server-$name"
  kill "$server_pid" 2>/dev/null || true
  wait "$watcher" 2>/dev/null || true
}

echo "$sockets sockets in $((sockets / 20)) conversations, $rate sends/s for ${seconds}s (one send every ${think}s per socket), same server build, one run each"
run_side artillery
run_side harness

hz=$(getconf CLK_TCK)
printf '\n| tool | peak sockets | messages received | CPU s | peak RSS MiB | CPU s per 1k sockets | CPU s per 10k messages | RSS MiB per 1k sockets | server CPU s |\n|---|---|---|---|---|---|---|---|---|\n'
for name in artillery harness; do
  read -r _wall user sys rss_kib <"$out/time-$name"
  read -r delivered server_ticks <"$out/server-$name"
  peak=$(cat "$out/peak-sockets-$name" 2>/dev/null || echo 0)
  python3 - "$name" "$peak" "$delivered" "$user" "$sys" "$rss_kib" "$server_ticks" "$hz" <<'PY'
import sys
name, peak, delivered, user, sys_s, rss_kib, server_ticks, hz = sys.argv[1:]
peak, delivered = int(peak), int(delivered)
cpu = float(user) + float(sys_s)
rss = int(rss_kib) / 1024
per_k = lambda v: v / (peak / 1000) if peak else float("nan")
print(f"| {name} | {peak} | {delivered} | {cpu:.1f} | {rss:.0f} | {per_k(cpu):.2f} | "
      f"{cpu / (delivered / 10000) if delivered else float('nan'):.2f} | {per_k(rss):.1f} | "
      f"{int(server_ticks) / int(hz):.1f} |")
PY
done
echo
echo "logs and the harness report: $out"
