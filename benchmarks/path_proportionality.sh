#!/usr/bin/env bash
# Issue 4 ("Speed"): is the latency of the Table III paths (SegFormer-B2 512x512, synthetic weights)
# proportional to their MACs? Also the per-frame path-switch overhead and the cost of compiling a path.
# Waits for a quiet machine (../shared/anchors/wait_quiet.sh), runs bench_paths with THREADS (2) OpenMP
# threads and REPS (5) repetitions (interleaved in random order, so a load change hits all paths
# alike), writes OUT and prints a markdown table.
# Usage: benchmarks/path_proportionality.sh [BUILD_DIR=build] [OUT=docs/results/path_proportionality.csv]
# Env: THREADS=2 REPS=5 WAIT=300 (seconds to wait for quiet) MAX_BUSY=0.10 INTERLEAVE=1 DRT_SHARED=../shared
#      FILTER=<benchmark regex> (default: all; path a must be in it, e.g. 'table3_path/[ag]' for a quick check)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build}"
out="${2:-$root/docs/results/path_proportionality.csv}"
anchors="$(realpath -m "${DRT_SHARED:-$root/../shared}")/anchors"
threads="${THREADS:-2}"
reps="${REPS:-5}"
bin="$build/benchmarks/bench_paths"
[ -x "$bin" ] || { echo "path_proportionality: $bin not built (cmake --build $build --target bench_paths)" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
if [ -x "$anchors/wait_quiet.sh" ]; then
  "$anchors/wait_quiet.sh" "${WAIT:-300}" "${MAX_BUSY:-0.10}" >&2
else
  echo "path_proportionality: $anchors/wait_quiet.sh not found: not waiting for a quiet machine" >&2
fi
json="$(mktemp)"
trap 'rm -f "$json"' EXIT
interleave=()
[ "${INTERLEAVE:-1}" = 1 ] && interleave=(--benchmark_enable_random_interleaving=true)
echo "bench_paths: $threads threads, $reps repetitions ($(date -u +%H:%M:%S) UTC) ..." >&2
OMP_NUM_THREADS=$threads "$bin" --benchmark_filter="${FILTER:-.}" --benchmark_repetitions="$reps" "${interleave[@]}" \
  --benchmark_format=json --benchmark_out="$json" --benchmark_out_format=json >/dev/null
/usr/bin/python3 - "$json" "$out" "$threads" <<'EOF'
import csv, json, statistics, sys, datetime
src, out, threads = sys.argv[1], sys.argv[2], sys.argv[3]
d = json.load(open(src))
runs = {}
for b in d["benchmarks"]:
    if b.get("run_type") != "iteration":
        continue
    runs.setdefault(b["run_name"], []).append(b)
scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}
def times_ms(name):
    return [b["real_time"] * scale[b["time_unit"]] for b in runs[name]]
paths = sorted(k for k in runs if k.startswith("BM_table3_path/"))
if not paths:
    sys.exit("path_proportionality: no BM_table3_path rows in the benchmark output")
ref = statistics.median(times_ms(paths[0]))
rows = []
for k in paths:
    b0 = runs[k][0]
    t = times_ms(k)
    med = statistics.median(t)
    label = b0.get("label", "")
    letter, text = label.split(": ", 1)
    kv = dict(tok.split("=") for tok in text.split())
    time_rel = med / ref
    ratio = time_rel / b0["macs_rel"]
    rows.append(dict(row=letter, depths=kv.get("depths", ""), fuse_in=kv.get("fuse_in", ""),
                     gmacs=b0["GMACs"], gmacs_paper=b0["GMACs_paper"], macs_rel=b0["macs_rel"],
                     macs_paper_rel=b0["macs_paper_rel"], median_ms=med, min_ms=min(t),
                     cv=statistics.pstdev(t) / statistics.mean(t), reps=len(t), time_rel=time_rel, ratio=ratio,
                     in_target=int(0.9 <= ratio <= 1.15)))
over = []
for k in sorted(runs):
    if k.startswith(("BM_path_switch/", "BM_compile_path/", "BM_parse_compile")):
        t = times_ms(k)
        over.append(dict(row=k.replace("BM_", ""), median_ms=statistics.median(t), min_ms=min(t),
                         cv=statistics.pstdev(t) / statistics.mean(t), reps=len(t)))
cols = ["row", "depths", "fuse_in", "gmacs", "gmacs_paper", "macs_rel", "macs_paper_rel", "median_ms", "min_ms", "cv",
        "reps", "time_rel", "ratio", "in_target", "threads", "date"]
date = datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
fmt = lambda v: ("%.6g" % v) if isinstance(v, float) else str(v)
with open(out, "w", newline="") as f:
    w = csv.writer(f, lineterminator="\n")  # quotes the depths ("3,4,6,3")
    w.writerow(cols)
    for r in rows + over:
        r = dict(r, threads=threads, date=date)
        w.writerow([fmt(r.get(c, "")) for c in cols])
print(f"wrote {out}", file=sys.stderr)
ctx = d.get("context", {})
print(f"SegFormer-B2 512x512, 150 classes, synthetic weights, batch 1, {threads} threads, median of "
      f"{rows[0]['reps']} repetitions; {ctx.get('date', '')}, load average {ctx.get('load_avg', '')}\n")
print("| path | depths | Conv2DFuse in | GMACs (propagated) | MACs rel | MACs rel (paper acc.) | median ms | time rel | time rel / MACs rel | 0.9..1.15 |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['row']} | {r['depths']} | {r['fuse_in']} | {r['gmacs']:.2f} | {r['macs_rel']:.3f} | "
          f"{r['macs_paper_rel']:.3f} | {r['median_ms']:.0f} (cv {100*r['cv']:.0f} %) | {r['time_rel']:.3f} | "
          f"{r['ratio']:.2f} | {'yes' if r['in_target'] else 'NO'} |")
print("\n| per-frame / plan-time cost | median | min |\n|---|---|---|")
for r in over:
    print(f"| {r['row']} | {1e3*r['median_ms']:.2f} us | {1e3*r['min_ms']:.2f} us |")
EOF
