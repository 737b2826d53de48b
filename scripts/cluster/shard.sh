#!/usr/bin/env bash
# One shard of an accuracy-only sweep (docs/sharding.md), whichever job runner started it:
#   shard.sh OUT_DIR MODEL_DIR... --data DIR [drt sweep options]
# writes OUT_DIR/shard-I-of-N.json. The shard comes from the runner's environment:
#   SHARD_INDEX + SHARD_COUNT                   (parallel.sh, or set by hand)
#   SLURM_ARRAY_TASK_ID + SLURM_ARRAY_TASK_COUNT (a Slurm job array, sbatch --array=0-(N-1))
#   JOB_COMPLETION_INDEX + SHARD_COUNT          (a Kubernetes Indexed Job, completions = N)
# Threads per shard: SHARD_THREADS, else SLURM_CPUS_PER_TASK, else 1 (one shard per core is the
# fastest: the images of a shard then run without any barrier). DRT names the drt binary (default:
# drt on the PATH).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: shard.sh OUT_DIR MODEL_DIR... --data DIR [drt sweep options]" >&2
  exit 2
fi
out=$1
shift
index=${SHARD_INDEX:-${SLURM_ARRAY_TASK_ID:-${JOB_COMPLETION_INDEX:-}}}
count=${SHARD_COUNT:-${SLURM_ARRAY_TASK_COUNT:-}}
if [ -z "$index" ] || [ -z "$count" ]; then
  echo "shard.sh: no shard: set SHARD_INDEX and SHARD_COUNT, or run in a Slurm job array," \
       "or in a Kubernetes Indexed Job with SHARD_COUNT set" >&2
  exit 2
fi
threads=${SHARD_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
mkdir -p "$out"
exec "${DRT:-drt}" sweep "$@" --accuracy-only --shard "$index/$count" --threads "$threads" \
  --out "$out/shard-$index-of-$count.json"
