#!/usr/bin/env bash
# Quick start 2: build and run the test suite (Release), then again under ASan + UBSan.
# DRT_SHARED: shared fixtures directory (default ../shared next to the repository).
# DRT_SKIP_ASAN=1 skips the sanitizer build (for quick local runs).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# A DRT_SHARED given relative is taken from the caller's directory; tests get it absolute.
DRT_SHARED="$(realpath -m "${DRT_SHARED:-$root/../shared}")"
export DRT_SHARED
cd "$root"

banner() { printf '\n==== %s ====\n' "$*"; }
jobs="$(nproc)"

banner "dependencies"
bash scripts/deps.sh

banner "Release build (build/)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DDRT_SANITIZE=OFF \
      -DDRT_BUILD_TESTS=ON -DDRT_BUILD_TOOLS=ON -DDRT_BUILD_EXAMPLES=ON -DDRT_BUILD_BENCHMARKS=ON
cmake --build build -j "$jobs"
banner "Release tests"
# Serial on purpose: OpenMP tests crawl when they share 2 cores with the packaging test's compile.
ctest --test-dir build --output-on-failure

if [ "${DRT_SKIP_ASAN:-0}" = 1 ]; then
  banner "sanitizer build skipped (DRT_SKIP_ASAN=1)"
  exit 0
fi

banner "ASan + UBSan build (build-asan/)"
# -g1 (line tables: file:line in every report) compiles ~40 % faster than -g on our largest tests.
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
      -DDRT_SANITIZE=ON -DDRT_BUILD_TESTS=ON -DDRT_BUILD_BENCHMARKS=OFF -DDRT_BUILD_TOOLS=ON -DDRT_BUILD_EXAMPLES=ON
cmake --build build-asan -j "$jobs"
banner "ASan + UBSan tests"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure

banner "all tests passed"
