#!/usr/bin/env bash
# Side-by-side: drt's whole-model benchmarks and the PyTorch CPU anchor of ../shared/anchors,
# measured in one run on this machine (same shapes, random weights, batch 1, 2 threads).
# Usage: benchmarks/compare_anchors.sh [BUILD_DIR=build] [OUT=docs/results/anchors.csv]
# Needs Debian's python3-torch, python3-torchvision (Swin) and libopenblas-dev (without it torch's Linear
# falls back to the reference BLAS, ~10x slower) for the anchor; without torch only drt runs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build}"
out="${2:-$root/docs/results/anchors.csv}"
anchors="$(realpath -m "${DRT_SHARED:-$root/../shared}")/anchors"
threads="${THREADS:-2}"
mkdir -p "$(dirname "$out")"
quiet() { [ -x "$anchors/wait_quiet.sh" ] && "$anchors/wait_quiet.sh" "${WAIT:-120}" 0.15 >&2 || true; }

# drt model name -> (benchmark binary, filter, anchor model name)
rows=("segformer_b0 bench_models BM_segformer/b0" "segformer_b2 bench_models BM_segformer/b2"
      "swin_t_upernet bench_upernet BM_upernet_swin/swin_t" "resnet50 bench_resnet BM_resnet/resnet50")
echo "model,threads,drt_median_ms,torch_min_ms,torch_median_ms,torch_config,drt_over_torch" > "$out"
for row in "${rows[@]}"; do
  read -r model bin filter <<<"$row"
  [ -x "$build/benchmarks/$bin" ] || { echo "skip $model: $build/benchmarks/$bin not built" >&2; continue; }
  quiet
  echo "drt   $model ..." >&2
  drt_ms=$(OMP_NUM_THREADS=$threads "$build/benchmarks/$bin" --benchmark_filter="$filter" \
             --benchmark_repetitions=5 --benchmark_report_aggregates_only=true --benchmark_format=json 2>/dev/null |
           /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print([b["real_time"] for b in d["benchmarks"] if b.get("aggregate_name")=="median"][0])')
  t_min=""; t_med=""; cfg=""
  if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    quiet
    echo "torch $model ..." >&2
    # The anchor's best 2-thread setting: OpenBLAS single-threaded, channels_last where it helps.
    best=""
    for cl in "" "--cl"; do
      j=$(cd "$anchors" && env -u OPENBLAS_CORETYPE OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=1 \
            /usr/bin/python3 bench_torch.py "$model" "$threads" $cl --reps 5 --tag drt_compare 2>/dev/null | tail -1 || true)
      m=$(echo "$j" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["min_ms"])' 2>/dev/null || true)
      if [ -z "$m" ]; then echo "torch $model ${cl:-nchw}: the anchor failed (python3-torchvision missing?)" >&2; continue; fi
      if [ -z "$best" ] || awk -v a="$m" -v b="$best" 'BEGIN{exit !(a<b)}'; then
        best=$m; t_min=$m; t_med=$(echo "$j" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["median_ms"])')
        cfg="${cl:-nchw} blas1"
      fi
    done
  fi
  ratio=$([ -n "$t_med" ] && awk -v a="$drt_ms" -v b="$t_med" 'BEGIN{printf "%.2f", a/b}' || echo "")
  echo "$model,$threads,$drt_ms,$t_min,$t_med,$cfg,$ratio" | tee -a "$out" >&2
done
echo "wrote $out" >&2
column -s, -t < "$out"
