#!/usr/bin/env bash
# Side-by-side: drt's whole-model benchmarks, the PyTorch CPU anchor and the ONNX Runtime CPU anchor of
# ../shared/anchors, measured in one run on this machine (same shapes, random weights, batch 1, 2 threads).
# Waits for a quiet machine before each measurement.
# Usage: benchmarks/compare_anchors.sh [BUILD_DIR=build] [OUT=docs/results/anchors.csv]
# Env: THREADS=2, MODELS="segformer_b0 segformer_b0_unfolded segformer_b2 segformer_b2_unfolded swin_t_upernet
#      resnet50" (a subset runs only those rows; *_unfolded is drt with the decoder as published, --no-fold,
#      beside the same anchor model),
#      WAIT=120 (seconds to wait for quiet), TORCH=0 / ORT=0 (leave that anchor out),
#      ANCHOR_CACHE=$HOME/.cache/drt-anchors (scratch folder of the ORT anchor), ORT_SETUP=1 (install
#      onnxruntime-node and export the missing ONNX models there first),
#      ORT_INT8=1 (also the rows segformer_b0_int8 / segformer_b2_int8: drt `precision=int8` (BM_segformer_int8)
#      beside ONNX Runtime running the anchor quantized by benchmarks/ort_int8/quantize_anchor.py; torch columns
#      empty there; drt_over_ort is then drt int8 / ORT int8; unset, nothing changes).
# PyTorch anchor: Debian's python3-torch, python3-torchvision (Swin) and libopenblas-dev (without it torch's
# Linear falls back to the reference BLAS, ~10x slower); without torch only drt (and ORT) run.
# ONNX Runtime anchor (npm onnxruntime-node 1.30, CPU EP, intra-op threads = THREADS), set up once outside
# ../shared (the export writes ~0.9 GB), which ORT_SETUP=1 does:
#   mkdir -p $ANCHOR_CACHE/ort && cp ../shared/anchors/ort/package.json $ANCHOR_CACHE/ort/
#   (cd $ANCHOR_CACHE/ort && npm install --ignore-scripts)
#   (cd $ANCHOR_CACHE && PYTHONPATH=../shared/anchors /usr/bin/python3 ../shared/anchors/export_onnx.py MODEL...)
# ORT int8 anchor (ORT_INT8=1): static QDQ, per-channel, MinMax over ../shared/data/camvid-calib/images, made on a
# machine with python onnx + onnxruntime (here: the device machine) and copied into $ANCHOR_CACHE/onnx as
# <model>_int8.onnx; its .in.f32/.out.f32 are linked to the fp32 model's (the int8 output differs from torch's,
# which the check line reports without judging). bench_ort.js keys input shapes by model name, so a copy
# bench_ort_int8.js that maps <model>_int8 to <model>'s shape is generated from it with sed. Regenerate:
#   mkdir -p .ortq/anchors .ortq/ref && echo /.ortq/ >> .git/info/exclude && cp ../shared/anchors/models.py .ortq/anchors/ &&
#   cp -r ../shared/data/camvid-calib/images .ortq/ && cp $ANCHOR_CACHE/onnx/segformer_b[02].*.f32 .ortq/ref/
#   (device, carry .ortq) python3 benchmarks/ort_int8/quantize_anchor.py --anchors .ortq/anchors --calib .ortq/images \
#       --ref .ortq/ref --out $OUT          # -> segformer_b0_int8.onnx, segformer_b2_int8.onnx.part-aa/-ab, summary.json
#   cat OUTDIR/segformer_b2_int8.onnx.part-* > $ANCHOR_CACHE/onnx/segformer_b2_int8.onnx; cp OUTDIR/segformer_b0_int8.onnx $ANCHOR_CACHE/onnx/
# A missing anchor is reported and its columns left empty; the other columns are still measured.
set -euo pipefail
# Some environments here export OPENBLAS_CORETYPE=Haswell (and OPENBLAS_L2_SIZE), which forces
# OpenBLAS onto AVX2 kernels and halves torch's Linear layers on AVX-512 machines; the anchors'
# own scripts unset them, and so does this one.
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build}"
out="${2:-$root/docs/results/anchors.csv}"
anchors="$(realpath -m "${DRT_SHARED:-$root/../shared}")/anchors"
cache="$(realpath -m "${ANCHOR_CACHE:-$HOME/.cache/drt-anchors}")"
threads="${THREADS:-2}"
int8="${ORT_INT8:-0}"
default_models="segformer_b0 segformer_b0_unfolded segformer_b2 segformer_b2_unfolded swin_t_upernet resnet50"
[ "$int8" = 1 ] && default_models+=" segformer_b0_int8 segformer_b2_int8"
models="${MODELS:-$default_models}"
mkdir -p "$(dirname "$out")"
quiet() { [ -x "$anchors/wait_quiet.sh" ] && "$anchors/wait_quiet.sh" "${WAIT:-120}" 0.15 >&2 || true; }
json_field() { /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1" 2>/dev/null; }

# ---- the ONNX Runtime anchor: onnxruntime-node in $cache/ort, models in $cache/onnx
ort_ok=0
if [ "${ORT:-1}" = 1 ]; then
  if ! command -v node >/dev/null; then
    echo "ORT anchor missing: node is not installed (apt-get install nodejs npm); ORT columns left empty" >&2
  else
    if [ "${ORT_SETUP:-0}" = 1 ] && [ ! -d "$cache/ort/node_modules/onnxruntime-node" ]; then
      echo "ORT setup: npm install --ignore-scripts in $cache/ort ..." >&2
      mkdir -p "$cache/ort" && cp "$anchors/ort/package.json" "$cache/ort/"
      (cd "$cache/ort" && npm install --ignore-scripts >&2)
    fi
    if [ -d "$cache/ort/node_modules/onnxruntime-node" ]; then
      cp "$anchors/ort/bench_ort.js" "$cache/ort/"  # reads ../onnx and appends to ../results/ort.jsonl
      ort_ok=1
      if [ "$int8" = 1 ]; then  # the same script, with <model>_int8 given <model>'s input shape
        rm -f "$cache/ort/bench_ort_int8.js"
        sed "/const feeds = /i\\  for (const k of Object.keys(shapes)) shapes[k + '_int8'] = shapes[k];  // added by compare_anchors.sh" \
          "$anchors/ort/bench_ort.js" > "$cache/ort/bench_ort_int8.js"
        grep -q "shapes\[k + '_int8'\]" "$cache/ort/bench_ort_int8.js" ||
          echo "ORT int8: could not derive bench_ort_int8.js from bench_ort.js (its shapes map changed?)" >&2
      fi
    else
      echo "ORT anchor missing: no onnxruntime-node in $cache/ort (run with ORT_SETUP=1, or see this script's header);" \
           "ORT columns left empty" >&2
    fi
  fi
fi
have_torch=0
if [ "${TORCH:-1}" = 1 ]; then
  if /usr/bin/python3 -c 'import torch' 2>/dev/null; then have_torch=1
  else echo "torch anchor missing: /usr/bin/python3 cannot import torch (apt-get install python3-torch); torch columns left empty" >&2
  fi
fi

# drt model name -> (benchmark binary, filter); the anchors use the same model names.
declare -A bench=([segformer_b0]="bench_models BM_segformer/b0" [segformer_b2]="bench_models BM_segformer/b2"
                  [segformer_b0_unfolded]="bench_models BM_segformer_unfolded/b0"
                  [segformer_b2_unfolded]="bench_models BM_segformer_unfolded/b2"
                  [swin_t_upernet]="bench_upernet BM_upernet_swin/swin_t/" [resnet50]="bench_resnet BM_resnet/resnet50/")
[ "$int8" = 1 ] && bench+=([segformer_b0_int8]="bench_models BM_segformer_int8/b0" [segformer_b2_int8]="bench_models BM_segformer_int8/b2")
echo "model,threads,drt_median_ms,torch_min_ms,torch_median_ms,torch_config,drt_over_torch,ort_min_ms,ort_median_ms,drt_over_ort" > "$out"
for row in $models; do
  [ -n "${bench[$row]:-}" ] || { echo "skip $row: not a known row (${!bench[*]})" >&2; continue; }
  read -r bin filter <<<"${bench[$row]}"
  model="${row%_unfolded}"  # the anchors' model name
  [ -x "$build/benchmarks/$bin" ] || { echo "skip $model: $build/benchmarks/$bin not built" >&2; continue; }
  quiet
  echo "drt   $row ..." >&2
  drt_ms=$(OMP_NUM_THREADS=$threads "$build/benchmarks/$bin" --benchmark_filter="$filter" \
             --benchmark_repetitions=5 --benchmark_report_aggregates_only=true --benchmark_format=json 2>/dev/null |
           /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print([b["real_time"] for b in d["benchmarks"] if b.get("aggregate_name")=="median"][0])' || true)
  [ -n "$drt_ms" ] || echo "drt   $model: the benchmark failed; drt column left empty" >&2

  t_min=""; t_med=""; cfg=""
  if [ $have_torch = 1 ] && [ "${model%_int8}" = "$model" ]; then  # no torch int8 anchor
    quiet
    echo "torch $model ..." >&2
    # The anchor's best 2-thread setting: OpenBLAS single-threaded, channels_last where it helps.
    best=""
    for cl in "" "--cl"; do
      j=$(cd "$anchors" && env -u OPENBLAS_CORETYPE OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=1 \
            /usr/bin/python3 bench_torch.py "$model" "$threads" $cl --reps 5 --tag drt_compare 2>/dev/null | tail -1 || true)
      m=$(echo "$j" | json_field min_ms || true)
      if [ -z "$m" ]; then echo "torch $model ${cl:-nchw}: the anchor failed (python3-torchvision missing?)" >&2; continue; fi
      if [ -z "$best" ] || awk -v a="$m" -v b="$best" 'BEGIN{exit !(a<b)}'; then
        best=$m; t_min=$m; t_med=$(echo "$j" | json_field median_ms)
        cfg="${cl:-nchw} blas1"
      fi
    done
  fi

  o_min=""; o_med=""
  if [ $ort_ok = 1 ]; then
    fp="${model%_int8}"; js=bench_ort.js
    if [ "$fp" != "$model" ]; then  # int8 anchor: quantized model, fp32 model's input/reference
      js=bench_ort_int8.js
      for e in in.f32 out.f32; do
        [ -e "$cache/onnx/$model.$e" ] || [ ! -f "$cache/onnx/$fp.$e" ] || ln -s "$fp.$e" "$cache/onnx/$model.$e"
      done
      [ -f "$cache/onnx/$model.onnx" ] || echo "ORT int8: no $cache/onnx/$model.onnx; make it with" \
        "benchmarks/ort_int8/quantize_anchor.py (see this script's header)" >&2
    elif [ ! -f "$cache/onnx/$model.onnx" ] && [ "${ORT_SETUP:-0}" = 1 ]; then
      echo "ORT setup: exporting $model to $cache/onnx ..." >&2
      (cd "$cache" && PYTHONPATH="$anchors" /usr/bin/python3 "$anchors/export_onnx.py" "$model" >&2 2>/dev/null) ||
        echo "ORT setup: export of $model failed" >&2
    fi
    if [ -f "$cache/onnx/$model.onnx" ]; then
      quiet
      echo "ort   $model ..." >&2
      reps=7; [ "$model" = swin_t_upernet ] && reps=5
      j=$(cd "$cache" && node "ort/$js" "$model" "$threads" $reps 2>/dev/null | tail -1 || true)
      o_min=$(echo "$j" | json_field min_ms || true)
      if [ -z "$o_min" ]; then
        echo "ort   $model: the anchor failed" >&2
      else
        o_med=$(echo "$j" | json_field median_ms)
        echo "ort   $model: $(echo "$j" | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); ok=d["check_max_abs_diff"]<=1e-3*d["check_max_abs_ref"]; i8=d["model"].endswith("_int8"); print("output vs torch%s: max abs diff %g (max |ref| %g) %s; bg_busy %s" % (" fp32" if i8 else "", d["check_max_abs_diff"], d["check_max_abs_ref"], "(int8: differs by design)" if i8 else "ok" if ok else "MISMATCH", d["bg_busy"]))')" >&2
      fi
    else
      echo "ORT anchor missing for $model: no $cache/onnx/$model.onnx (ORT_SETUP=1 exports it); ORT columns left empty" >&2
    fi
  fi

  ratio() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}' || echo ""; }
  echo "$row,$threads,$drt_ms,$t_min,$t_med,$cfg,$(ratio "$drt_ms" "$t_med"),$o_min,$o_med,$(ratio "$drt_ms" "$o_med")" |
    tee -a "$out" >&2
done
echo "wrote $out" >&2
column -s, -t < "$out"
echo
/usr/bin/python3 - "$out" <<'EOF'
import csv, sys
for r in csv.DictReader(open(sys.argv[1])):
    def show(key, who):
        return f"drt/{who} = {r[key]}" if r[key] else f"drt/{who}: n/a"
    print(f"{r['model']:>15}: {show('drt_over_torch', 'torch')}, {show('drt_over_ort', 'ORT')} (medians)")
EOF
