#!/usr/bin/env bash
# A/B two (or more) veche binaries on shapes (a) 1 -> 50 and (b) 6 x 6: server pinned to CPU 0,
# load tool to CPU 1, loopback only, binaries alternated within each round so that a shared
# machine's drift hits them alike. Prints: round binary shape joined pkt/s loss% us/pkt user sys.
# Usage: ROUNDS=2 DURATION=15 bench/ab.sh path/to/veche-a path/to/veche-b
# Needs target/release/veche-load (cargo build --release -p veche-load). NICE as in
# compare-janus.sh (default -10; needs root).
set -u
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-2}
dur=${DURATION:-15}
prio=(nice -n "${NICE:--10}")
load=target/release/veche-load
for r in $(seq "$rounds"); do
    for bin in "$@"; do
        for shape in "a:--publishers 1 --subscribers 50" "b:--publishers 6 --subscribers 0"; do
            name=${shape%%:*}
            read -ra args <<<"${shape#*:}"
            d=$(mktemp -d /tmp/veche-ab.XXXXXX)
            "${prio[@]}" taskset -c 0 "$bin" serve --http 127.0.0.1:19180 --media-port 19982 \
                --media-bind 127.0.0.1 --public-ip 127.0.0.1 --data-dir "$d" \
                --max-participants 5000 >/dev/null 2>&1 &
            pid=$!
            for _ in $(seq 100); do curl -sf http://127.0.0.1:19180/healthz >/dev/null && break; sleep 0.1; done
            out=$("${prio[@]}" taskset -c 1 "$load" --url ws://127.0.0.1:19180/ws --pid "$pid" --json \
                --duration "$dur" --join-rate 40 --rooms 1 "${args[@]}" --video-kbps 1000 --audio \
                --room-prefix "ab$r$name$RANDOM" 2>/dev/null)
            kill "$pid"
            wait "$pid" 2>/dev/null
            rm -rf "$d"
            echo "$out" | python3 -c "
import json, sys
r = json.load(sys.stdin); s = r.get('server') or {}
print('$r', sys.argv[1], '$name', r['joined'], round(r['received_packets_per_s']), r['loss_pct'],
      s.get('cpu_us_per_packet'), s.get('cpu_user_s'), s.get('cpu_system_s'))" "$bin"
        done
    done
done
