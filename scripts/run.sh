#!/usr/bin/env bash
# Quick start 1: build the drt program and segment the bundled CamVid frame with the bundled
# SegFormer-B0 model under a latency budget (its bundled lookup table picks the most accurate path
# whose p95 latency fits; DRT_BUDGET_MS, default 25), writing out/segment_mask.png and
# out/segment_overlay.png.
# The program is target drt_cli in tools/drt (OUTPUT_NAME drt: the name drt is the library target).
# Extra arguments go to `drt segment` (e.g. --model DIR --image FILE).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DDRT_BUILD_TESTS=OFF -DDRT_BUILD_BENCHMARKS=OFF \
      -DDRT_BUILD_TOOLS=ON >/dev/null
cmake --build build --target drt_cli -j "$(nproc)"
mkdir -p out
build/tools/drt/drt segment --lut data/models/segformer-b0-camvid/lut.json --budget-ms "${DRT_BUDGET_MS:-25}" --p95 --out out/segment_mask.png --overlay out/segment_overlay.png "$@"
