#!/usr/bin/env python3
"""Turns the JSON reports of one compare-janus.sh run into bench/results/DATE.md and a gnuplot
script for DATE.png (forwarded packets/s against server CPU, both servers).

Usage: report.py WORKDIR OUT.md UPTIME_BEFORE UPTIME_AFTER [NOTE]
"""

import glob
import json
import os
import platform
import statistics
import subprocess
import sys

work, out, uptime_before, uptime_after = sys.argv[1:5]
note = sys.argv[5] if len(sys.argv) > 5 else ""
png = out[: -len(".md")] + ".png"


def load(path):
    with open(path) as f:
        return json.load(f)


def shape_key(name):
    # a, b, then c steps in numeric order
    if name.startswith("c-1to"):
        n, _, retry = name[5:].partition("-")
        return ("c", int(n), retry)
    return (name, 0, "")


runs = []
for path in glob.glob(os.path.join(work, "*-*.json")):
    server, name = os.path.basename(path)[: -len(".json")].split("-", 1)
    runs.append((server, name, load(path)))
runs.sort(key=lambda r: (shape_key(r[1]), r[0]))


def fmt(v, digits=1):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


rows = []
for server, name, r in runs:
    if not r:
        rows.append(f"| {name} | {server} | run failed | | | | | | | | | | |")
        continue
    s = r.get("server") or {}
    rows.append(
        "| {name} | {server} | {joined}/{failed} | {pps:.0f} | {mbit} | {loss} | {deliv} | "
        "{p50} / {p99} / {mx} | {user} / {sys_} | {cpu} | {us} | {ppcs} | {rss} | {tool} |".format(
            name=name,
            server=server,
            joined=r["joined"],
            failed=r["failed"],
            pps=r["received_packets_per_s"],
            mbit=fmt(r["received_mbit_per_s"], 2),
            loss=fmt(r["loss_pct"], 3),
            deliv=fmt(r.get("delivered_pct"), 1),
            p50=fmt(r["latency_ms_p50"], 2),
            p99=fmt(r["latency_ms_p99"], 2),
            mx=fmt(r["latency_ms_max"], 1),
            user=fmt(s.get("cpu_user_s"), 2),
            sys_=fmt(s.get("cpu_system_s"), 2),
            cpu=fmt(s.get("cpu_pct_of_one_core"), 1),
            us=fmt(s.get("cpu_us_per_packet"), 2),
            ppcs=fmt(s.get("packets_per_cpu_s"), 0),
            rss=fmt(s.get("rss_mib"), 0),
            tool=fmt(r["tool"]["cpu_pct_of_one_core"], 0),
        )
    )


def ppcs(server, name):
    for s_, n, r in runs:
        if s_ == server and n == name and r:
            return (r.get("server") or {}).get("packets_per_cpu_s")
    return None


def ratio(name):
    v, j = ppcs("veche", name), ppcs("janus", name)
    return f"{v / j:.2f}" if v and j else "n/a"


def run_of(server, name):
    return next((r for s_, n, r in runs if s_ == server and n == name and r), None)


def like_for_like(name):
    # A simulcast round compares the servers only when both forwarded the same thing: the
    # subscribers of each tile ended on the same layers and got within 10 % of the same
    # median video rate (a subscriber that dipped to a lower layer during the window and
    # came back ends on the same layer with less), and both publishers kept up with their
    # nominal rate. On a starved machine Veche's estimate drops layers that Janus, which
    # forwards the substream asked for, keeps sending.
    v, j = run_of("veche", name), run_of("janus", name)
    if not v or not j:
        return False
    tiles = lambda r: r.get("subscribers_by_tile") or {}
    layers = lambda r: {t: g["on_layer"] for t, g in tiles(r).items()}
    kept_up = lambda r: r["sent_packets_per_s"] >= 0.95 * r["nominal_sent_packets_per_s"]
    same_rate = all(
        abs(g["video_kbps_p50"] - tiles(j)[t]["video_kbps_p50"])
        <= 0.1 * max(g["video_kbps_p50"], tiles(j)[t]["video_kbps_p50"])
        for t, g in tiles(v).items() if t in tiles(j)
    )
    return layers(v) == layers(j) and same_rate and kept_up(v) and kept_up(j)


def simulcast_rounds():
    # d-simulcast-rN: one ratio per round, each from the two runs of that round.
    names = sorted({n for _, n, _ in runs if n.startswith("d-simulcast-r")},
                   key=lambda n: int(n.rsplit("r", 1)[1]))
    out = []
    for n in names:
        v, j = ppcs("veche", n), ppcs("janus", n)
        out.append((n, v / j if v and j else None, like_for_like(n)))
    return out


sim_rounds = simulcast_rounds()
sim_ratios = [r for _, r, same in sim_rounds if r and same]
sim_all = ", ".join(
    f"{n[len('d-simulcast-'):]} {r:.2f}{'' if same else ' (not like for like)'}"
    for n, r, same in sim_rounds if r
)
sim_median = statistics.median(sim_ratios) if sim_ratios else None
sim_headline = (
    f"**{sim_median:.2f}** (median of the {len(sim_ratios)} of {len(sim_rounds)} rounds "
    f"that were like for like; every round: {sim_all})"
    if sim_ratios else f"n/a (no round was like for like; every round: {sim_all or 'none'})"
)
with open(os.path.join(work, "simulcast-ratio"), "w") as f:
    f.write(f"{sim_median:.2f}" if sim_median else "nan")
sim_rows = []
for server, name, r in runs:
    if not name.startswith("d-simulcast-r") or not r:
        continue
    for tile, g in (r.get("subscribers_by_tile") or {}).items():
        layers = ", ".join(f"{k}: {v}" for k, v in g["on_layer"].items())
        sim_rows.append(
            f"| {name} | {server} | {tile} | {g['subscribers']} | {layers} | "
            f"{g['video_kbps_p50']} ({g['video_kbps_min']} – {g['video_kbps_max']}) |"
        )
sim_subscribers = next(
    (r["config"]["subscribers"] for _, n, r in runs if n.startswith("d-simulcast") and r), "N"
)
sim_section = ""
if sim_rows:
    sim_section = (
        "\n## Simulcast: what each subscriber received\n\n"
        "The layer each subscriber ended the window on (from the layer in its packets' tags) "
        "and its video rate. Veche chose the layer from the reported tile and the bandwidth "
        "estimate; Janus subscribers asked for the substream their tile needs "
        "(`configure` with `substream`). Delivered % does not apply to this shape: each "
        "subscriber receives one of the three layers the publisher sends. A round counts in "
        "the headline only when both servers forwarded alike: the subscribers of each tile "
        "ended on the same layers with median video rates within 10 % of each other, and "
        "both runs' publishers sent at least 95 % of their nominal rate (on a starved machine "
        "Veche's bandwidth estimate drops layers for a while, which Janus, forwarding what "
        "was asked for, does not).\n\n"
        "| run | server | tile | subscribers | on layer | video kbit/s p50 (min – max) |\n"
        "|---|---|---|---|---|---|\n" + "\n".join(sim_rows) + "\n"
    )

largest = {}
for server in ("veche", "janus"):
    try:
        with open(os.path.join(work, f"{server}-largest")) as f:
            n, why = f.read().strip().split("|", 1)
            largest[server] = (int(n), why)
    except OSError:
        largest[server] = (0, "not run")

if all(why == "not run" for _, why in largest.values()):
    largest_text = "Shape (c), the largest 1 → N, was not run (`SHAPES`)."
else:
    largest_text = (
        "Largest 1 → N with < 1 % loss, ≥ 99 % of the expected packets delivered and every "
        "join successful (steps tried: see table):\n"
        f"veche **{largest['veche'][0]}** ({largest['veche'][1]}), "
        f"janus **{largest['janus'][0]}**\n({largest['janus'][1]})."
    )

with open(os.path.join(work, "commands")) as f:
    commands = f.read().strip()
try:
    with open(os.path.join(work, "revision")) as f:
        revision = f.read().strip()
except OSError:
    revision = "unknown"
try:
    with open(os.path.join(work, "server-commands")) as f:
        server_commands = f.read().strip()
except OSError:
    server_commands = "(not recorded)"
try:
    with open(os.path.join(work, "invocation")) as f:
        invocation = f.read().strip()
except OSError:
    invocation = "bench/compare-janus.sh"

machine = {
    "nproc": sh("nproc"),
    "cpu": sh("lscpu | sed -n 's/^Model name: *//p'"),
    "kernel": platform.release(),
    "janus": sh("janus --version 2>/dev/null | head -1"),
    "rustc": sh("rustc --version"),
}

md = f"""# Veche vs Janus: forwarding benchmark, {os.path.basename(out)[:-3]}

Produced by `bench/compare-janus.sh` (see `bench/README.md` for how each number is computed).
Each server ran alone, pinned to one core (`taskset -c 0`), with the load tool
(`veche-load`, one thread) pinned to the other core; identical load for both.

## Headline

| shape | veche/janus forwarded packets per CPU-second |
|---|---|
| (a) 1 → 50, VP8 ~1 Mbit/s + Opus | **{ratio('a-1to50')}** |
| (b) 6 × 6 meeting | **{ratio('b-6x6')}** |
| (d) simulcast 1 → {sim_subscribers}, tiles 1280×720 / 320×180 | {sim_headline} |

{largest_text}

## All runs

Packets/s and Mbit/s are what the subscribers received (forwarded media, including
retransmissions); CPU is the server process's user / system seconds over the measurement
window (from /proc/PID/stat), µs/pkt = server CPU time / packets received by subscribers.
Loss counts sender-counter gaps not repaired by RTX; delivered % is received / (sent × receivers
per publisher). Janus runs with `event_loops = 1` (one static event loop instead of a thread
per PeerConnection: its best setting on one core).

| shape | server | joined/failed | pkt/s | Mbit/s | loss % | delivered % | latency p50 / p99 / max ms | CPU user / sys s | CPU % of 1 core | µs/pkt | pkt per CPU-s | RSS MiB | tool CPU % |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

![forwarded packets/s vs server CPU]({os.path.basename(png)})
{sim_section}
## Machine

- `nproc`: {machine['nproc']}; CPU: {machine['cpu']}; kernel {machine['kernel']}
- Veche revision measured: {revision} (binaries copied to a private directory at the start)
- {machine['janus']}; {machine['rustc']}
- load before the runs: `{uptime_before.strip()}`; after: `{uptime_after.strip()}`
- {note or 'Other work (Rust builds by other engineers) may have shared the two cores during the run; the load averages above say how much.'}

## Commands

The run: `{invocation}`

Servers (one at a time, a fresh process per run):

```
{server_commands}
```

Load (one line per run):

```
{commands}
```

(`$PID` is the server's process id; the room prefix is made unique per run.)
"""

with open(out, "w") as f:
    f.write(md)

# Plot: packets/s received (x) against server CPU % of one core (y), one series per server.
for server in ("veche", "janus"):
    with open(os.path.join(work, f"{server}.dat"), "w") as f:
        pts = []
        for s_, name, r in runs:
            if s_ == server and r and r.get("server"):
                pts.append((r["received_packets_per_s"], r["server"]["cpu_pct_of_one_core"], name))
        for x, y, name in sorted(pts):
            f.write(f"{x} {y} {name}\n")

with open(os.path.join(work, "plot.gp"), "w") as f:
    f.write(
        f"""set terminal png size 900,560
set output '{png}'
set title 'Forwarded packets/s vs server CPU (one core, same load)'
set xlabel 'packets/s received by subscribers'
set ylabel 'server CPU, % of one core'
set key top left
set grid
plot '{work}/veche.dat' using 1:2 with linespoints pt 7 title 'veche', \\
     '{work}/janus.dat' using 1:2 with linespoints pt 5 title 'janus'
"""
    )
