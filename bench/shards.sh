#!/usr/bin/env bash
# Shard scaling: several rooms against Veche with 1 shard, then with 2 (or $SHARDS), the
# server and the load tool unpinned (on a 2-core machine they share both cores: the tool
# needs about as much CPU per packet as the server, so this shows how the server's work
# spreads over shards, not the most a shard can forward). Prints one line per run and each
# server thread's share of the server's CPU.
#
# Environment: SHARDS (default "1 2"), ROOMS (8), PUBLISHERS (6), SUBSCRIBERS (0), DURATION
# (20), NICE (0; e.g. -10 on a shared machine, needs root), SKIP_BUILD=1.
# Loopback only (127.0.0.1); everything started here is stopped on exit.
set -euo pipefail

cd "$(dirname "$0")/.."
shards_list=${SHARDS:-"1 2"}
rooms=${ROOMS:-8}
publishers=${PUBLISHERS:-6}
subscribers=${SUBSCRIBERS:-0}
duration=${DURATION:-20}
prio=(nice -n "${NICE:-0}")
http=127.0.0.1:19080

if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release -q -p veche-server -p veche-load
fi
work=$(mktemp -d /tmp/veche-shards.XXXXXX)
cp target/release/veche target/release/veche-load "$work/"
ulimit -n 16384 2>/dev/null || true
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT

# Per-thread CPU ticks (utime + stime) of process $1: "name ticks" lines.
threads() {
    for t in /proc/"$1"/task/*; do
        awk '{ sub(/^[0-9]+ \(/, ""); split($0, a, ") "); split(a[2], f, " ");
               print a[1], f[12] + f[13] }' "$t/stat" 2>/dev/null | sed "s/^/$(basename "$t") /"
    done
}

echo "revision $(git rev-parse --short HEAD); $(nproc) CPUs; load: $(cut -d' ' -f1-3 /proc/loadavg)"
for n in $shards_list; do
    rm -rf "$work/data"
    "${prio[@]}" "$work/veche" serve --http "$http" --media-port 19882 --media-bind 127.0.0.1 \
        --public-ip 127.0.0.1 --data-dir "$work/data" --max-participants 5000 \
        --media-shards "$n" >"$work/veche-$n.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do curl -sf "http://$http/healthz" >/dev/null && break; sleep 0.1; done
    threads "$pid" >"$work/threads-$n-before"
    "${prio[@]}" "$work/veche-load" --url "ws://$http/ws" --pid "$pid" --json --duration "$duration" \
        --join-rate 40 --rooms "$rooms" --publishers "$publishers" --subscribers "$subscribers" \
        --video-kbps 1000 --audio --room-prefix "shards$n-$$-" >"$work/load-$n.json" 2>>"$work/load.log"
    threads "$pid" >"$work/threads-$n-after"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
    python3 - "$work" "$n" <<'PY'
import json, sys
work, n = sys.argv[1], sys.argv[2]
r = json.load(open(f"{work}/load-{n}.json"))
s = r.get("server") or {}
print(f"shards {n}: joined {r['joined']} failed {r['failed']} | {r['received_packets_per_s']:.0f} pkt/s "
      f"| loss {r['loss_pct']} % | delivered {r['delivered_pct']} % | server {s.get('cpu_pct_of_one_core')} % "
      f"of a core, {s.get('cpu_us_per_packet')} us/pkt | tool {r['tool']['cpu_pct_of_one_core']} % "
      f"| latency p50/p99 {r.get('latency_ms_p50')}/{r.get('latency_ms_p99')} ms")
def ticks(path):
    out = {}
    for line in open(path):
        tid, rest = line.split(" ", 1)
        name, t = rest.rsplit(" ", 1)
        out[tid] = (name, int(t))
    return out
b, a = ticks(f"{work}/threads-{n}-before"), ticks(f"{work}/threads-{n}-after")
used = {tid: (a[tid][0], a[tid][1] - b.get(tid, (None, 0))[1]) for tid in a}
total = sum(t for _, t in used.values()) or 1
busy = sorted(used.values(), key=lambda x: -x[1])
print("   threads: " + ", ".join(f"{name} {100 * t / total:.0f} %" for name, t in busy if t > 0))
PY
done
echo "raw JSON and logs in $work"
