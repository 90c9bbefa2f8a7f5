#!/usr/bin/env bash
# Side-by-side forwarding benchmark: Veche and Janus (VideoRoom) under identical load from
# veche-load. Each server runs alone, pinned to CPU $SERVER_CPU (default 0), the load tool on
# CPU $TOOL_CPU (default 1). Shapes:
#   a) 1 room, 1 publisher -> 50 subscribers, VP8 ~1 Mbit/s + Opus
#   b) 1 room, 6 x 6: six participants each publishing and receiving the other five
#   c) 1 -> N for N in $STEPS until loss >= 1 %, a join fails, or the load tool saturates
#   d) simulcast: 1 publisher sending three layers (180p/360p/720p, RIDs q/h/f) + Opus ->
#      $SIM_SUBSCRIBERS subscribers, half with a 1280x720 tile, half with 320x180; Veche picks
#      each one's layer from its tile, Janus subscribers ask for that substream; $ROUNDS
#      rounds alternating the servers (veche, janus, then janus, veche, ...), median ratio
#      over the rounds where both forwarded the same layers (see report.py)
# Writes bench/results/YYYY-MM-DD.md (+ .png; or $RESULT_NAME.md) and prints as its last line
#   veche/janus forwarded-packets-per-cpu-second: X.XX (1->50), Y.YY (6x6), Z.ZZ (simulcast)
# Everything runs inside a private network namespace made for the run (loopback plus a veth
# pair holding $BENCH_IP, default 10.231.0.1): no packet can reach any other host, and no
# address of this machine's real interfaces is used. Needs root (ip netns).
# Bounded: every load run has a timeout; whatever the script started is killed on exit.
#
# Environment: DURATION (s per run, default 20), STEPS (default "100 200 300 400 600 800"),
# JOIN_RATE (joins/s, default 40), SERVER_CPU, TOOL_CPU, SKIP_BUILD=1, NOTE (free text on the
# machine's load for the results file), NICE (e.g. -10: run server and tool at that priority
# so other work on a shared machine takes less of their cores; needs root; default 0),
# SHAPES (which to run, default "a b c d"), SIM_SUBSCRIBERS (default 50), ROUNDS (default 3).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
duration=${DURATION:-20}
steps=${STEPS:-"100 200 300 400 600 800"}
join_rate=${JOIN_RATE:-40}
server_cpu=${SERVER_CPU:-0}
tool_cpu=${TOOL_CPU:-1}
shapes=" ${SHAPES:-a b c d} "
sim_subscribers=${SIM_SUBSCRIBERS:-50}
rounds=${ROUNDS:-3}
has_shape() { [[ $shapes == *" $1 "* ]]; }
prio=(nice -n "${NICE:-0}")
veche_http=127.0.0.1:18080
veche_media=17882
janus_ws=18188

log() { echo "[compare-janus] $*" >&2; }

# --- dependencies --------------------------------------------------------------------------
missing=()
command -v janus >/dev/null || missing+=(janus)
command -v gnuplot >/dev/null || missing+=(gnuplot-nox)
command -v curl >/dev/null || missing+=(curl)
command -v taskset >/dev/null || missing+=(util-linux)
command -v python3 >/dev/null || missing+=(python3)
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    sudo_=""
    [ "$(id -u)" = 0 ] || sudo_=sudo
    $sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Hundreds of participants: a UDP and a TCP socket each, on both sides.
ulimit -n 16384 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

# --- work dir, cleanup ---------------------------------------------------------------------
work=$(mktemp -d /tmp/veche-bench.XXXXXX)
server_pid=""
stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        # Janus takes a moment to tear sessions down; don't wait forever.
        for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
}
# A private network namespace for servers and tool, deleted on exit.
netns=veche-bench-$$
ns=(ip netns exec "$netns")
cleanup() { stop_server; ip netns del "$netns" 2>/dev/null || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build ---------------------------------------------------------------------------------
if [ -z "${SKIP_BUILD:-}" ]; then
    log "building veche and veche-load (release)"
    cargo build --release -q -p veche-server -p veche-load
fi
# Private copies: others building in this checkout must not swap the binaries mid-run.
mkdir -p "$work/bin"
target=${CARGO_TARGET_DIR:-$root/target}
cp "$target/release/veche" "$target/release/veche-load" "$work/bin/"
veche_bin=$work/bin/veche
load_bin=$work/bin/veche-load
revision="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git -C "$root" status --porcelain -- "crates/*/src" Cargo.lock 2>/dev/null)" ]; then
    revision="$revision + uncommitted changes in crates/*/src"
fi
echo "$revision" >"$work/revision"

# libnice (Janus) gathers no loopback candidates, so media uses a non-loopback address: one
# end of a veth pair inside the namespace. Both ends live in the namespace, so traffic to it
# is local delivery there and nothing can leave.
ip=${BENCH_IP:-10.231.0.1}
ip netns add "$netns"
ip -n "$netns" link set lo up
ip -n "$netns" link add vbench0 type veth peer name vbench1
ip -n "$netns" addr add "$ip/24" dev vbench0
ip -n "$netns" link set vbench0 up
ip -n "$netns" link set vbench1 up
log "media on $ip, servers on CPU $server_cpu, load tool on CPU $tool_cpu"
"$root/bench/janus-config.sh" "$work/janus-cfg" "$janus_ws" "$ip"

wait_for() { # command... ; up to 20 s
    for _ in $(seq 200); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    return 1
}

start_server() { # veche|janus
    case $1 in
        veche)
            rm -rf "$work/veche-data"
            "${ns[@]}" "${prio[@]}" taskset -c "$server_cpu" "$veche_bin" serve --http "$veche_http" \
                --media-port "$veche_media" --media-bind "$ip" --public-ip "$ip" \
                --data-dir "$work/veche-data" --max-participants 5000 \
                >>"$work/veche.log" 2>&1 &
            server_pid=$!
            wait_for "${ns[@]}" curl -sf "http://$veche_http/healthz" || { log "veche did not start"; exit 1; }
            ;;
        janus)
            "${ns[@]}" "${prio[@]}" taskset -c "$server_cpu" janus -F "$work/janus-cfg" -C "$work/janus-cfg/janus.jcfg" \
                >>"$work/janus.log" 2>&1 &
            server_pid=$!
            wait_for "${ns[@]}" bash -c "exec 3<>/dev/tcp/127.0.0.1/$janus_ws" || { log "janus did not start"; exit 1; }
            ;;
    esac
}

# How the servers were started, for the results file.
printf '%s\n' \
    "ip netns exec NS ${prio[*]} taskset -c $server_cpu $veche_bin serve --http $veche_http --media-port $veche_media --media-bind $ip --public-ip $ip --data-dir DIR --max-participants 5000" \
    "ip netns exec NS ${prio[*]} taskset -c $server_cpu janus -F DIR -C DIR/janus.jcfg   # DIR from: bench/janus-config.sh DIR $janus_ws $ip" \
    >"$work/server-commands"

url_of() { [ "$1" = veche ] && echo "ws://$veche_http/ws" || echo "ws://127.0.0.1:$janus_ws"; }

commands=()
run_load() { # server name args... ; writes $work/$server-$name.json
    local server=$1 name=$2
    shift 2
    start_server "$server"
    sleep 1
    local cmd=("${ns[@]}" "${prio[@]}" taskset -c "$tool_cpu" "$load_bin" --url "$(url_of "$server")" --target "$server"
        --pid "$server_pid" --json --duration "$duration" --join-rate "$join_rate"
        --bind-ip "$ip" --room-prefix "$name-$$-$RANDOM" "$@")
    commands+=("$(printf '%q ' "${cmd[@]}" | sed "s/veche-bench-[0-9]*/NS/; s/--pid [0-9]*/--pid \$PID/; s/--room-prefix [^ ]*/--room-prefix $name/")")
    log "$server $name: $*"
    if ! timeout $((duration + 180)) "${cmd[@]}" >"$work/$server-$name.json" 2>>"$work/load.log"; then
        log "$server $name: load run failed (see $work/load.log)"
        echo '{}' >"$work/$server-$name.json"
    fi
    stop_server
    python3 - "$work/$server-$name.json" <<'PY' >&2
import json, sys
r = json.load(open(sys.argv[1]))
if r:
    s = r.get("server") or {}
    print(f"   joined {r['joined']} failed {r['failed']} | {r['received_packets_per_s']:.0f} pkt/s "
          f"| loss {r['loss_pct']} % | delivered {r['delivered_pct']} % | cpu {s.get('cpu_pct_of_one_core')} % "
          f"| {s.get('cpu_us_per_packet')} us/pkt | tool {r['tool']['cpu_pct_of_one_core']} %")
PY
}

# Verdict on run $1 for shape (c): "pass", "server" (loss >= 1 %, < 99 % delivered, or a
# failed join) or "tool" (the load tool used >= 90 % of its core or its publishers fell
# behind their nominal rate: the run says nothing about the server).
verdict() {
    python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
if not r:
    print("server")
elif (r["tool"]["cpu_pct_of_one_core"] >= 90
      or r["sent_packets_per_s"] < 0.95 * r["nominal_sent_packets_per_s"]):
    print("tool")
elif r["failed"] > 0 or r["loss_pct"] >= 1.0 or r["delivered_pct"] < 99.0:
    print("server")
else:
    print("pass")
PY
}

uptime_before=$(uptime)
for server in veche janus; do
    if has_shape a; then
        run_load "$server" a-1to50 --rooms 1 --publishers 1 --subscribers 50 --video-kbps 1000 --audio
    fi
    if has_shape b; then
        run_load "$server" b-6x6 --rooms 1 --publishers 6 --subscribers 0 --video-kbps 1000 --audio
    fi
    has_shape c || continue
    largest=0
    limit="every step passed"
    for n in $steps; do
        run_load "$server" "c-1to$n" --rooms 1 --publishers 1 --subscribers "$n" --video-kbps 1000 --audio
        v=$(verdict "$work/$server-c-1to$n.json")
        # Other processes on a shared machine cause one-off losses: a step fails only if a
        # second try fails too (both runs are in the results).
        if [ "$v" != pass ]; then
            run_load "$server" "c-1to$n-retry" --rooms 1 --publishers 1 --subscribers "$n" --video-kbps 1000 --audio
            v=$(verdict "$work/$server-c-1to$n-retry.json")
        fi
        case $v in
            pass) largest=$n ;;
            tool) limit="load tool limit reached at 1->$n"; break ;;
            *) limit="server limit: 1->$n lost >= 1 % or failed joins"; break ;;
        esac
    done
    echo "$largest|$limit" >"$work/$server-largest"
done
if has_shape d; then
    for round in $(seq "$rounds"); do
        # Alternate which server goes first, so drift on the machine favours neither.
        order="veche janus"
        [ $((round % 2)) = 0 ] && order="janus veche"
        for server in $order; do
            run_load "$server" "d-simulcast-r$round" --rooms 1 --publishers 1 \
                --subscribers "$sim_subscribers" --simulcast --tile 1280x720 --tile 320x180 --audio
        done
    done
fi
uptime_after=$(uptime)

# --- results ---------------------------------------------------------------------------------
date=$(date -u +%F)
mkdir -p "$root/bench/results"
# RESULT_NAME keeps several runs of one day apart (default: the date).
out=$root/bench/results/${RESULT_NAME:-$date}.md
printf '%s\n' "${commands[@]}" >"$work/commands"
# This run itself, with the knobs that shaped it.
invocation=""
for v in SHAPES STEPS DURATION ROUNDS SIM_SUBSCRIBERS JOIN_RATE NICE SERVER_CPU TOOL_CPU \
    SKIP_BUILD CARGO_TARGET_DIR RESULT_NAME; do
    [ -n "${!v:-}" ] && invocation+="$v=${!v} "
done
echo "${invocation}bench/compare-janus.sh" >"$work/invocation"
python3 "$root/bench/report.py" "$work" "$out" "$uptime_before" "$uptime_after" "${NOTE:-}"
gnuplot "$work/plot.gp"
log "wrote $out; logs and raw JSON in $work"
python3 - "$work" <<'PY'
import json, os, sys
w = sys.argv[1]
def ppcs(server, name):
    try:
        r = json.load(open(os.path.join(w, f"{server}-{name}.json")))
    except OSError:
        return 0
    return ((r or {}).get("server") or {}).get("packets_per_cpu_s") or 0
def ratio(name):
    j = ppcs("janus", name)
    return ppcs("veche", name) / j if j else float("nan")
# report.py's median over the simulcast rounds that were like for like.
sim = open(os.path.join(w, "simulcast-ratio")).read().strip()
print(f"veche/janus forwarded-packets-per-cpu-second: {ratio('a-1to50'):.2f} (1->50), "
      f"{ratio('b-6x6'):.2f} (6x6), {sim} (simulcast)")
PY
