#!/usr/bin/env bash
# Submits the sharded precompute as a job array of $SHARDS tasks, and the
# merge as a job that runs only when every task succeeded. Prints both job ids.
#
#   POEMS=/shared/poems.json EMBEDDINGS=/shared/embeddings.json \
#   WORK=/shared/run1 SHARDS=16 bash examples/slurm/submit.sh
#
# WORK must be on a file system every node sees. Other settings:
# DIVERSITY_BIN (default: diversity-gpu on PATH), PRECOMPUTE_ARGS (extra
# precompute options), CPUS_PER_TASK (threads per shard, default 8),
# SBATCH_ARGS (extra sbatch options for both jobs, e.g. "--partition=gpu").
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
: "${POEMS:?}" "${WORK:?}"
shards="${SHARDS:-4}"
export POEMS WORK EMBEDDINGS="${EMBEDDINGS:-}" DIVERSITY_BIN="${DIVERSITY_BIN:-diversity-gpu}" PRECOMPUTE_ARGS="${PRECOMPUTE_ARGS:-}"
mkdir -p "$WORK/shards" "$WORK/logs"
# shellcheck disable=SC2206
extra=(${SBATCH_ARGS:-})
array=$(sbatch --parsable "${extra[@]}" --array="0-$((shards - 1))" --cpus-per-task="${CPUS_PER_TASK:-8}" \
  --chdir="$WORK/logs" --export=ALL "$here/precompute.sbatch")
array="${array%%;*}"
merge=$(sbatch --parsable "${extra[@]}" --dependency="afterok:$array" --kill-on-invalid-dep=yes \
  --chdir="$WORK/logs" --export=ALL "$here/merge.sbatch")
merge="${merge%%;*}"
echo "array $array merge $merge"
