#!/usr/bin/env python3
"""The verdict and the results file of bench/soak.sh: reads the run's work directory
(samples.csv, main.json, churn.jsonl, flood.json), writes OUT.md, exits 1 if anything keeps
growing or was left behind. Usage: soak_report.py WORK OUT DURATION [NOTE]."""
import csv, json, os, sys
work, out, duration = sys.argv[1], sys.argv[2], int(sys.argv[3])
note = sys.argv[4] if len(sys.argv) > 4 else ""
rows = list(csv.DictReader(open(f"{work}/samples.csv")))
after = rows[-1]
# Only samples taken while all the load ran: churn and flood stop 15 s before the end.
rows = [r for r in rows if not r["t_s"].startswith("after") and float(r["t_s"]) <= duration - 20]
def series(k): return [(float(r["t_s"]), float(r[k] or 0)) for r in rows]
def slope(pts):
    n = len(pts)
    mx = sum(t for t, _ in pts) / n
    my = sum(v for _, v in pts) / n
    den = sum((t - mx) ** 2 for t, _ in pts) or 1
    return sum((t - mx) * (v - my) for t, v in pts) / den * 60  # per minute
limits = {"rss_kib": 512, "fds": 1, "threads": 0.5, "rooms": 0.5, "participants": 0.5,
          "ws_connections": 0.5}
units = {"rss_kib": "KiB", "fds": "", "threads": "", "rooms": "", "participants": "",
         "ws_connections": ""}
fails, lines = [], []
for k, lim in limits.items():
    s = series(k)
    half = len(s) // 2
    first, second = s[:half], s[half:]
    sl = slope(second)
    growing = sl > lim and second[-1][1] > max(v for _, v in first)
    if growing:
        fails.append(f"{k} keeps growing: {sl:.2f}{units[k]}/min over the second half")
    vals = [v for _, v in s]
    lines.append(f"| {k} | {vals[0]:.0f} | {min(vals):.0f} | {max(vals):.0f} | {vals[-1]:.0f} | "
                 f"{sl:+.2f} | {lim} | {'GROWS' if growing else 'ok'} |")
for k in ["rooms", "participants", "ws_connections"]:
    if float(after[k] or 0) != 0:
        fails.append(f"{k} is {after[k]} 20 s after the load stopped")
def load(path):
    try:
        return json.load(open(path))
    except (OSError, ValueError):
        return {}
main = load(f"{work}/main.json")
flood = load(f"{work}/flood.json")
churn = [json.loads(l) for l in open(f"{work}/churn.jsonl") if l.strip()] if os.path.exists(f"{work}/churn.jsonl") else []
delivered = main.get("delivered_pct")
if delivered is None or delivered < 90:
    fails.append(f"the 6x6 meeting delivered {delivered} % (below 90 %)")
churn_joined = sum(c.get("joined", 0) for c in churn)
churn_failed = sum(c.get("failed", 0) for c in churn)
server = main.get("server") or {}
md = [f"# Soak {os.path.basename(out)}", "",
      f"`DURATION={duration} bench/soak.sh` on revision {os.popen('git rev-parse --short HEAD').read().strip()}, "
      f"{os.cpu_count()} CPUs. {note}".rstrip(), "",
      "Load: a 6x6 meeting (veche-load, VP8 + Opus each), churn (veche-load runs of 3 "
      "participants into one room, every ~15 s), a signalling flood (soak_flood.py).", "",
      f"- 6x6 meeting: joined {main.get('joined')} failed {main.get('failed')}, delivered "
      f"{delivered} %, loss {main.get('loss_pct')} %, latency p50/p99 {main.get('latency_ms_p50')}/"
      f"{main.get('latency_ms_p99')} ms, server {server.get('cpu_pct_of_one_core')} % of a core",
      f"- churn: {len(churn)} runs, {churn_joined} joins, {churn_failed} failed",
      f"- flood: {json.dumps(flood)}",
      f"- 20 s after the load: rooms {after['rooms']}, participants {after['participants']}, "
      f"ws connections {after['ws_connections']}, RSS {float(after['rss_kib'])/1024:.1f} MiB, "
      f"fds {after['fds']}, threads {after['threads']}", "",
      "Rule: a series fails when its least-squares slope over the second half is above the "
      "limit and its last sample is above the first half's maximum.", "",
      "| series | first | min | max | last | slope/min (2nd half) | limit/min | verdict |",
      "| --- | --- | --- | --- | --- | --- | --- | --- |", *lines, "",
      f"Samples: `{os.path.basename(out)}.csv` (every 10 s; the last row is 20 s after the load; "
      f"the slopes use the samples up to {duration - 20} s, while all the load ran).", "",
      "**Result: " + ("FAIL: " + "; ".join(fails) if fails else "pass") + "**", ""]
open(f"{out}.md", "w").write("\n".join(md))
print("\n".join(md))
sys.exit(1 if fails else 0)
