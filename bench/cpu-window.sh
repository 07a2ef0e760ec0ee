#!/usr/bin/env bash
# The harness's CPU per delivery in a window of steady traffic, split into
# user and system time, with the syscalls and context switches behind it
# (docs/performance.md, "Client CPU: the floor under a delivery" and
# "Client CPU: instructions per delivery"). The run's own summary gives
# the whole-run figure; this one leaves out ramp-up, drain and check.
#
#   bench/cpu-window.sh SCENARIO LABEL [harness run args...]
#
# Env: HARNESS (binary, default target/release/harness), SEED (21),
# WARMUP_S (60: seconds before the window), WINDOW_S (20),
# METRICS (127.0.0.1:9464), OUT (/tmp/cpu-window). Needs perf (Debian's
# linux-perf), curl, python3. Loopback only.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
if (( $# < 2 )); then
  echo "usage: $0 SCENARIO LABEL [harness run args...]" >&2
  exit 3
fi
scenario=$1 label=$2
shift 2
harness=${HARNESS:-$root/target/release/harness}
seed=${SEED:-21} warmup=${WARMUP_S:-60} window=${WINDOW_S:-20}
metrics=${METRICS:-127.0.0.1:9464}
out=${OUT:-/tmp/cpu-window}/$label
for tool in perf curl python3; do
  command -v "$tool" >/dev/null || { echo "$0: $tool is not on PATH" >&2; exit 3; }
done
[[ -x "$harness" ]] || { echo "$0: no harness binary at $harness (cargo build --release -p harness)" >&2; exit 3; }
rm -rf "$out" && mkdir -p "$out"

"$harness" run "$scenario" --seed "$seed" --quiet --out "$out" --metrics-listen "$metrics" "$@" \
  >"$out/stdout.txt" 2>"$out/stderr.txt" &
pid=$!
deliveries() { curl -sf "http://$metrics/metrics" | awk '/^harness_deliveries_total/ {print $2}'; }
# utime and stime, in clock ticks (fields 14 and 15 of /proc/PID/stat).
cpu_ticks() { awk '{print $14, $15}' "/proc/$pid/stat"; }

sleep "$warmup"
d0=$(deliveries)
read -r u0 s0 < <(cpu_ticks)
perf stat -e task-clock,context-switches,syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait \
  -p "$pid" -o "$out/perf-stat.txt" -- sleep "$window"
d1=$(deliveries)
read -r u1 s1 < <(cpu_ticks)
rc=0
wait "$pid" || rc=$?

python3 - "$d0" "$d1" "$u0" "$u1" "$s0" "$s1" "$(getconf CLK_TCK)" "$out" "$rc" <<'PY'
import re, sys
d0, d1, u0, u1, s0, s1, tick = (float(x) for x in sys.argv[1:8])
out, rc = sys.argv[8], sys.argv[9]
n = d1 - d0
if n <= 0:
    sys.exit(f"no deliveries in the window ({d0:.0f} -> {d1:.0f}): is the run still in ramp-up?")
us = lambda ticks: ticks / tick * 1e6 / n
stat = open(f"{out}/perf-stat.txt").read()
def count(name):
    m = re.search(r"([\d,.]+)\s+(?:msec\s+)?" + re.escape(name), stat)
    return float(m.group(1).replace(",", "")) if m else float("nan")
print(f"{out}: exit {rc}, {n:.0f} deliveries in the window; CPU per delivery "
      f"{us(u1 - u0 + s1 - s0):.2f} us (user {us(u1 - u0):.2f} + system {us(s1 - s0):.2f}); "
      f"per delivery: sendto {count('syscalls:sys_enter_sendto') / n:.3f}, "
      f"recvfrom {count('syscalls:sys_enter_recvfrom') / n:.3f}, "
      f"epoll_wait {count('syscalls:sys_enter_epoll_wait') / n:.3f}, "
      f"context switches {count('context-switches') / n:.3f}")
PY
grep -E "VALID|INVALID|UNKNOWN|cost:" "$out/stdout.txt" || true
exit "$rc"
