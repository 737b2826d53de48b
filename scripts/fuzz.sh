#!/usr/bin/env bash
# Fuzzes every reader of user files (tests/fuzz, docs/fuzzing.md): builds the libFuzzer targets with
# Debian's clang into build-fuzz/ and runs each one for a fixed time with a fixed seed, on a copy of
# its seed corpus (the repository is never written). Exits non-zero on any finding; the input that
# triggered it is saved as build-fuzz/findings/<target>/crash-* (or leak-, timeout-, oom-).
#
#   bash scripts/fuzz.sh                 # 30 s per target (the CI step)
#   bash scripts/fuzz.sh --seconds 120   # another duration
#   bash scripts/fuzz.sh --long          # the documented long run: 600 s per target
#   bash scripts/fuzz.sh --jobs 2 ...    # run 2 targets at a time (default 1)
#   bash scripts/fuzz.sh --only lut,path # a subset of the targets
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

seconds=30
jobs=1
targets=(safetensors config path lut image)
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --long) seconds=600; shift ;;
    --jobs) jobs="$2"; shift 2 ;;
    --only) IFS=, read -r -a targets <<< "$2"; shift 2 ;;
    -h|--help) sed -n '2,11p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "fuzz.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -gt 0 ]] || { echo "fuzz.sh: --seconds must be a positive integer" >&2; exit 2; }
[[ "$jobs" =~ ^[0-9]+$ && "$jobs" -gt 0 ]] || { echo "fuzz.sh: --jobs must be a positive integer" >&2; exit 2; }

banner() { printf '\n==== %s ====\n' "$*"; }

banner "dependencies (clang, libFuzzer)"
bash scripts/deps.sh fuzz

banner "build (build-fuzz/)"
build_start=$SECONDS
CC=clang CXX=clang++ cmake -S tests/fuzz -B build-fuzz -DCMAKE_BUILD_TYPE=None >/dev/null
cmake --build build-fuzz -j "$(nproc)" --target $(printf 'fuzz_%s ' "${targets[@]}")
echo "built in $((SECONDS - build_start)) s"

dict_for() { [ "$1" = safetensors ] && echo tests/fuzz/safetensors.dict || echo tests/fuzz/json.dict; }

# run_one TARGET: fuzz a fresh copy of the seeds; the log goes to build-fuzz/logs/TARGET.log.
run_one() {
  local t="$1" work="build-fuzz/run/$1" out="build-fuzz/findings/$1"
  rm -rf "$work" "$out"
  mkdir -p "$work" "$out" build-fuzz/logs
  cp tests/fuzz/corpus/"$t"/* "$work"/
  local rc=0
  ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    build-fuzz/fuzz_"$t" -seed=1 -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
      -dict="$(dict_for "$t")" -artifact_prefix="$out/" -print_final_stats=1 \
      "$work" > build-fuzz/logs/"$t".log 2>&1 || rc=$?
  echo "$rc" > build-fuzz/logs/"$t".rc
}

banner "fuzzing ${targets[*]}: ${seconds} s each, seed 1, ${jobs} at a time"
running=0
for t in "${targets[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n || true; running=$((running - 1)); fi
done
wait

failed=0
printf '\n%-12s %10s %8s %7s %s\n' target executions exec/s corpus result
for t in "${targets[@]}"; do
  log=build-fuzz/logs/"$t".log
  rc="$(cat build-fuzz/logs/"$t".rc)"
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
  corpus="$(find build-fuzz/run/"$t" -type f | wc -l)"
  found="$(find build-fuzz/findings/"$t" -type f | head -1)"
  if [ "$rc" = 0 ] && [ -z "$found" ]; then
    result="no findings"
  else
    result="FINDING (exit $rc): ${found:-see $log}"
    failed=1
  fi
  printf '%-12s %10s %8s %7s %s\n' "$t" "${runs:-?}" "${rate:-?}" "$corpus" "$result"
done
if [ "$failed" -ne 0 ]; then
  echo
  for t in "${targets[@]}"; do
    [ "$(cat build-fuzz/logs/"$t".rc)" = 0 ] && continue
    echo "---- $t (build-fuzz/logs/$t.log) ----"
    grep -a -E 'FINDING|ERROR|runtime error|terminate|what\(\)|SUMMARY|#[0-9]+ 0x' build-fuzz/logs/"$t".log | head -25
  done
  echo "fuzz.sh: findings above; reproduce with build-fuzz/fuzz_<target> <input>" >&2
  exit 1
fi
banner "fuzzing: no findings"
