#!/usr/bin/env bash
# Runs the sharded precompute on the current kubectl context: the volume, the
# Indexed Job of shards, then, once every index completed, the merge Job.
# Copy poems.json and embeddings.json onto the volume first (see README.md).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
timeout="${TIMEOUT:-24h}"
kubectl apply -f "$here/pvc.yaml"
kubectl apply -f "$here/shards-job.yaml"
# Fails (non-zero) if the Job fails instead of completing.
kubectl wait --for=condition=complete --timeout="$timeout" job/diversity-shards
kubectl apply -f "$here/merge-job.yaml"
kubectl wait --for=condition=complete --timeout="$timeout" job/diversity-merge
kubectl logs job/diversity-merge
