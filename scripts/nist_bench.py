#!/usr/bin/env python3
"""Cost of the NIST SP 1500-100 report beside reading the same results as CSV, whole process,
measured side by side in one run (issue 13, item 5: writing and reading a 200,000-station report
at most about 3x reading the CSV). Three commands, run in turn RUNS times each:

  csv   tally results FILE.csv --format json            (read CSV, validate, count)
  write tally results FILE.csv --format nist > R.json   (the same, then write the report)
  read  tally results R.json --format json              (read the report, validate, count)

It prints min / median wall time of each, the ratios to `csv` from the same run, and the median
CPU time (user + system: on a shared machine the wall time waits for a core); no time is
asserted anywhere. "write + read" counts writing beyond the CSV read (write - csv) plus reading.

Usage: scripts/nist_bench.py [--tally target/release/tally] [--stations 200000]
       [--candidates 4] [--seed 7] [--runs 5] [--dir /tmp]
Build first: cargo build --release -p tally-cli
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--tally", default="target/release/tally")
ap.add_argument("--stations", type=int, default=200_000)
ap.add_argument("--candidates", type=int, default=4)
ap.add_argument("--seed", type=int, default=7)
ap.add_argument("--runs", type=int, default=5)
ap.add_argument("--dir", default="/tmp")
a = ap.parse_args()

if not os.path.exists(a.tally):
    sys.exit(f"{a.tally} not found: cargo build --release -p tally-cli")
base = os.path.join(a.dir, f"tally-nist-bench-{a.stations}-{a.candidates}-{a.seed}")
csv, report = base + ".csv", base + ".json"
subprocess.run(
    [a.tally, "synth", "--stations", str(a.stations), "--candidates", str(a.candidates),
     "--seed", str(a.seed), "--out", csv],
    check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
)


def run(args, out):
    """Wall time of the command, and its CPU time (user + system, all threads)."""
    with open(out, "wb") as f:
        before = os.times()
        t = time.perf_counter()
        subprocess.run([a.tally, *args], check=True, stdout=f, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - t
        after = os.times()
        cpu = (after.children_user - before.children_user) + (
            after.children_system - before.children_system)
        return wall, cpu


commands = {
    "csv": (["results", csv, "--format", "json"], os.devnull),
    "write": (["results", csv, "--format", "nist"], report),
    "read": (["results", report, "--format", "json"], os.devnull),
}
run(*commands["write"])  # the report for `read`, and a warm page cache for everyone
times = {k: [] for k in commands}
cpu = {k: [] for k in commands}
for _ in range(a.runs):
    for k, (args, out) in commands.items():
        w, c = run(args, out)
        times[k].append(w)
        cpu[k].append(c)

mb = lambda p: os.path.getsize(p) / 1e6
print(f"NIST report cost: {a.stations} stations, {a.candidates} candidates, seed {a.seed}, "
      f"{os.cpu_count()} CPUs, {a.runs} runs each (min / median)")
print(f"  CSV {mb(csv):.1f} MB, NIST report {mb(report):.1f} MB ({mb(report) / mb(csv):.1f}x)")
lo = {k: min(v) for k, v in times.items()}
md = {k: statistics.median(v) for k, v in times.items()}
labels = {
    "csv": "tally results FILE.csv (read CSV)",
    "write": "tally results FILE.csv --format nist",
    "read": "tally results REPORT.json (read NIST)",
}
for k in commands:
    print(f"  {labels[k]:<40} {lo[k]:6.3f} / {md[k]:6.3f} s   "
          f"({lo[k] / lo['csv']:4.1f}x / {md[k] / md['csv']:4.1f}x csv)   "
          f"CPU {statistics.median(cpu[k]):6.3f} s")
for name, f in [("best", lo), ("median", md)]:
    extra = max(f["write"] - f["csv"], 0.0)
    print(f"  {name:>6}: writing beyond the CSV read {extra:.3f} s + reading {f['read']:.3f} s "
          f"= {(extra + f['read']) / f['csv']:.1f}x reading the CSV (goal: about 3x)")
