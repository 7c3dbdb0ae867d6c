#!/usr/bin/env bash
# End-to-end test of this directory on a real, throwaway, single-node Slurm
# cluster: installs Debian's slurm-wlm and munge when missing (as root),
# starts munged, slurmctld and slurmd on 127.0.0.1 with all their state in a
# temp dir, submits the shard array and the merge with submit.sh, waits, and
# checks that the merged cache's export equals an unsharded run's byte for
# byte. The daemons are stopped on every exit path.
#
#   bash examples/slurm/e2e.sh
#
# E2E_POEMS/E2E_EMBEDDINGS pick the corpus (default: the bundled one),
# E2E_ARGS extra precompute options (e.g. "--top-k 100"), E2E_SHARDS the
# array size (default 4), E2E_TIMEOUT the seconds to wait (default 600),
# E2E_KEEP=1 keeps the temp dir.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"
poems="${E2E_POEMS:-$root/assets/corpus/poems.json}"
embeddings="${E2E_EMBEDDINGS:-$root/assets/corpus/embeddings.json}"
shards="${E2E_SHARDS:-4}"
args="--backend cpu ${E2E_ARGS:-}"

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-$root/target}/release/diversity-gpu"

t="$(mktemp -d /tmp/slurm-e2e.XXXXXX)"
chmod 755 "$t"
export SLURM_CONF="$t/slurm.conf"
stop() {
  local rc=$?
  for pid in "$t/slurmd.pid" "$t/slurmctld.pid" "$t/munge/munged.pid"; do
    [ -s "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
  done
  for pid in "$t/slurmd.pid" "$t/slurmctld.pid" "$t/munge/munged.pid"; do
    for _ in $(seq 50); do [ -s "$pid" ] && kill -0 "$(cat "$pid")" 2>/dev/null || break; sleep 0.1; done
  done
  if [ $rc -ne 0 ]; then
    echo "slurm e2e FAILED (exit $rc); logs:" >&2
    tail -n 30 "$t"/log/*.log "$t"/work/logs/*.out >&2 2>/dev/null || true
  fi
  if [ "${E2E_KEEP:-}" = 1 ]; then echo "kept $t" >&2; else rm -rf "$t"; fi
  exit $rc
}
trap stop EXIT
trap 'exit 130' INT TERM

# munge: a fresh key and socket, private to this run.
mkdir -p "$t/munge" "$t/state" "$t/spool" "$t/log"
chmod 700 "$t/munge"
head -c 1024 /dev/urandom >"$t/munge/munge.key"
chmod 400 "$t/munge/munge.key"
munged --force --key-file="$t/munge/munge.key" --socket="$t/munge/munge.socket" \
  --pid-file="$t/munge/munged.pid" --log-file="$t/log/munged.log" --seed-file="$t/munge/seed"

node="$(hostname -s)"
port="${E2E_PORT:-16817}"
cat >"$SLURM_CONF" <<CONF
ClusterName=e2e
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
AuthInfo=socket=$t/munge/munge.socket
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$t/state
SlurmdSpoolDir=$t/spool
SlurmctldPidFile=$t/slurmctld.pid
SlurmdPidFile=$t/slurmd.pid
SlurmctldLogFile=$t/log/slurmctld.log
SlurmdLogFile=$t/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
MinJobAge=600
NodeName=$node NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=e2e Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
slurmctld -i -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 100); do
  sinfo -h -o %t 2>/dev/null | grep -qx idle && break
  sleep 0.2
done
sinfo -h -o %t | grep -qx idle || { echo "the node never became idle" >&2; sinfo >&2; exit 1; }
echo "slurm: $(sinfo -h -o '%P %D node(s) %t') (slurm $(sinfo -V | cut -d' ' -f2))"

# The reference: one unsharded run.
# shellcheck disable=SC2086
"$bin" precompute --quiet --poems "$poems" --embeddings "$embeddings" --out "$t/whole" $args 2>"$t/log/whole.log"
"$bin" export --cache "$t/whole" --out "$t/whole.jsonl"

ids=$(POEMS="$poems" EMBEDDINGS="$embeddings" WORK="$t/work" SHARDS="$shards" DIVERSITY_BIN="$bin" \
  PRECOMPUTE_ARGS="$args" CPUS_PER_TASK=1 bash examples/slurm/submit.sh)
echo "submitted: $ids"
array="$(echo "$ids" | awk '{print $2}')"
merge="$(echo "$ids" | awk '{print $4}')"
deadline=$((SECONDS + ${E2E_TIMEOUT:-600}))
while squeue -h -j "$array,$merge" 2>/dev/null | grep -q .; do
  [ $SECONDS -lt $deadline ] || { echo "timed out waiting for the jobs" >&2; squeue >&2; exit 1; }
  sleep 1
done
state() { scontrol show job "$1" | grep -o 'JobState=[A-Z_]*' | sort | uniq -c | tr -s ' ' | paste -sd, -; }
echo "array $array:$(state "$array"); merge $merge:$(state "$merge")"
state "$merge" | grep -q 'JobState=COMPLETED' || { echo "the merge job did not complete" >&2; exit 1; }
[ "$(ls "$t/work/shards" | wc -l)" = "$shards" ] || { echo "expected $shards shard caches" >&2; exit 1; }
cmp "$t/whole.jsonl" "$t/work/export.jsonl"
# A cache keeps its files in the generation folder its manifest names.
data() { echo "$1/gen-$(grep -o '"generation": [0-9]*' "$1/manifest.json" | head -n1 | grep -o '[0-9]*$')"; }
for f in similar.bin different.bin vectors.bin; do cmp "$(data "$t/whole")/$f" "$(data "$t/work/cache")/$f"; done
echo "slurm e2e passed: $shards shards on Slurm, merged, export byte-identical to the unsharded run ($(wc -l <"$t/whole.jsonl") poems)"
