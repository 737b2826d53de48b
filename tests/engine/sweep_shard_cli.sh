#!/usr/bin/env bash
# Sharded sweeps through the drt program and the scripts of scripts/cluster (issue 22):
#   sweep_shard_cli.sh DRT_BINARY SCENARIO SOURCE_DIR
# parallel: two shards at once with GNU parallel (scripts/cluster/parallel.sh), merged, equal entry for
#           entry to a single-process accuracy-only sweep of the same paths (drt lut compare); then the
#           latency-only sweep of the merged table. Exit 77 (skipped) without GNU parallel.
# runners:  the Slurm array script and the Kubernetes Indexed Job's command, run as those runners
#           start them (their environment variables), merged and compared the same way; a missing
#           shard is named by the merge.
set -uo pipefail
drt=$(realpath "$1") scenario=$2 src=$(realpath "$3")
work=$(mktemp -d "${TMPDIR:-/tmp}/drt_shard.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
fail() { echo "FAIL [$scenario]: $*" >&2; exit 1; }
# the bundled B0 on both labelled images at a small size: 3 encoder groups x 4 head paths
args=("$src/data/models/segformer-b0-camvid" --data "$src/data" --ignore-index 11 --size 128x160
      --depths "2,2,2,2;1,2,2,2;2,2,1,2" --fuse-in 512,1024 --pred-in 128,256)
single() {
  "$drt" sweep "${args[@]}" --accuracy-only --threads 2 --out single.json || fail "single-process sweep"
  "$drt" lut compare "$1" single.json || fail "the merged table differs from the single run"
}
case $scenario in
  parallel)
    command -v parallel >/dev/null || { echo "GNU parallel is not installed: skipped"; exit 77; }
    DRT=$drt bash "$src/scripts/cluster/parallel.sh" 2 par "${args[@]}" || fail "parallel.sh"
    [ -f par/shard-0-of-2.json ] && [ -f par/shard-1-of-2.json ] || fail "a shard table is missing"
    single par/accuracy.json
    "$drt" sweep "$src/data/models/segformer-b0-camvid" --latency-only --accuracy par/accuracy.json --repeats 1 \
      --decoder-repeats 1 --confirm 2 --threads 2 --out lut.json || fail "latency-only sweep"
    grep -q '"latency_source": "predicted"' lut.json || fail "the lut has no predicted latencies"
    ;;
  runners)
    for i in 0 1; do  # a Slurm job array, --array=0-1
      SLURM_ARRAY_TASK_ID=$i SLURM_ARRAY_TASK_COUNT=2 SLURM_SUBMIT_DIR=$src DRT=$drt \
        bash "$src/scripts/cluster/slurm.sbatch" slurm "${args[@]}" || fail "slurm.sbatch task $i"
    done
    out=$("$drt" lut merge slurm/shard-0-of-2.json --out x.json 2>&1) && fail "a lone shard was merged"
    grep -qF "drt: error: drt lut merge: shard 1/2 is missing" <<<"$out" || fail "merge did not name the missing shard: $out"
    "$drt" lut merge slurm/shard-*-of-2.json --out slurm.json || fail "merge of the slurm shards"
    single slurm.json
    for i in 0 1 2; do  # a Kubernetes Indexed Job with completions 3: the YAML's command, index from the job
      JOB_COMPLETION_INDEX=$i SHARD_COUNT=3 DRT=$drt \
        bash "$src/scripts/cluster/shard.sh" k8s "${args[@]}" || fail "shard.sh index $i"
    done
    "$drt" lut merge k8s/shard-*-of-3.json --out k8s.json || fail "merge of the k8s shards"
    single k8s.json
    ;;
  *) fail "unknown scenario" ;;
esac
echo "PASS [$scenario]"
