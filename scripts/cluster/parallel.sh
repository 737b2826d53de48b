#!/usr/bin/env bash
# A sweep's accuracy in N shards with GNU parallel, on this machine or on several hosts over ssh,
# then the merged accuracy table (docs/sharding.md):
#   parallel.sh N OUT_DIR MODEL_DIR... --data DIR [drt sweep options]
# writes OUT_DIR/shard-I-of-N.json and OUT_DIR/accuracy.json. Then, on the target machine:
#   drt sweep MODEL_DIR... --latency-only --accuracy OUT_DIR/accuracy.json --out lut.json
# Environment:
#   DRT            the drt binary (default: drt on the PATH); the same path on every host
#   HOSTS          GNU parallel's -S list, e.g. "8/node1,8/node2" (8 shards at a time on each) or
#                  ":,node2" (this machine and node2); default: this machine only. Every host needs
#                  drt, this script's folder, the models and the data at the same paths, and OUT_DIR
#                  on a shared file system (NFS, ...).
#   JOBS           shards at a time per host (GNU parallel -j; default: one per core)
#   SHARD_THREADS  OpenMP threads per shard (default 1)
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: parallel.sh N OUT_DIR MODEL_DIR... --data DIR [drt sweep options]" >&2
  exit 2
fi
n=$1 out=$2
shift 2
case $n in '' | *[!0-9]* | 0) echo "parallel.sh: N must be a positive integer, got '$n'" >&2; exit 2 ;; esac
command -v parallel >/dev/null || { echo "parallel.sh: GNU parallel is not installed (apt-get install parallel)" >&2; exit 2; }
drt=${DRT:-drt}
command -v "$drt" >/dev/null || { echo "parallel.sh: drt binary '$drt' not found (set DRT)" >&2; exit 2; }
drt=$(command -v "$drt")
case $drt in /*) ;; *) drt=$PWD/$drt ;; esac
case $out in /*) ;; *) out=$PWD/$out ;; esac
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$out"
rm -f "$out"/shard-*-of-"$n".json
# One command line per shard, quoted for the (local or remote) bash that runs it.
cmd="SHARD_INDEX={} SHARD_COUNT=$n SHARD_THREADS=${SHARD_THREADS:-1} DRT=$(printf %q "$drt")"
cmd+=" bash $(printf %q "$here/shard.sh") $(printf %q "$out") $(printf '%q ' "$@")"
opts=(--halt now,fail=1 --line-buffer --tagstring 'shard {}')
[ -n "${JOBS:-}" ] && opts+=(-j "$JOBS")
[ -n "${HOSTS:-}" ] && opts+=(-S "$HOSTS")
start=$(date +%s.%N)
parallel "${opts[@]}" "$cmd" ::: $(seq 0 $((n - 1)))
end=$(date +%s.%N)
if [ "$n" = 1 ]; then
  cp "$out/shard-0-of-1.json" "$out/accuracy.json"  # shard 0/1 is the whole table already
else
  "$drt" lut merge "$out"/shard-*-of-"$n".json --out "$out/accuracy.json"
fi
echo "shards     $n in $(awk "BEGIN { printf \"%.1f\", $end - $start }") s wall"
