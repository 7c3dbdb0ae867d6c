#!/usr/bin/env bash
# The peer benchmark: this tool's CPU backend against the Python a user would
# write instead (benches/peers/peer.py: numpy BLAS matrix and sorts, a numba
# walk), side by side in one run, alternating, on two corpora:
#   - the first 2,000 fortunes, full orderings;
#   - all of fortunes, --top-k 100.
# Prints per phase and whole run each side's median, every round's ratio
# tool / peer and its median; checks that the peer's orderings agree with the
# tool's cache on at least --min-agree % of positions, and that the peer's
# exact variant (float64 GEMM: exact integer dots) agrees on 100 %.
#
# One command: scripts/peers-bench.sh [--rounds R] [--min-agree P] [--corpus 2k|fortunes|both]
#   [--peer-walk numba|numpy]   (numpy: the batched numpy walk instead of numba's)
# Corpus: $FORTUNES (default ../shared/corpora/fortunes beside the checkout).
# The virtual environment (numpy, numba; about 200 MB) is made once at
# $PEERS_VENV (default ~/.cache/diversity-gpu/peers-venv) and reused.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=3
MIN_AGREE=95
WHICH=both
PEER_WALK=numba
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) ROUNDS=$2; shift 2 ;;
        --min-agree) MIN_AGREE=$2; shift 2 ;;
        --corpus) WHICH=$2; shift 2 ;;
        --peer-walk) PEER_WALK=$2; shift 2 ;;
        *) echo "usage: $0 [--rounds R] [--min-agree P] [--corpus 2k|fortunes|both] [--peer-walk numba|numpy]" >&2; exit 2 ;;
    esac
done
VENV=${PEERS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/diversity-gpu/peers-venv}
FORTUNES=${FORTUNES:-$ROOT/../shared/corpora/fortunes}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
step() { echo "== $*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }
[ -f "$FORTUNES/poems.json" ] || fail "no corpus at $FORTUNES (set FORTUNES)"

PINS=(numpy==2.4.6 numba==0.68.1 llvmlite==0.50.0)
step "virtual environment at $VENV (${PINS[*]})"
if ! "$VENV/bin/python" -c 'import numpy, numba, sys; sys.exit(numpy.__version__ != "2.4.6" or numba.__version__ != "0.68.1")' 2>/dev/null; then
    start=$(date +%s)
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q "${PINS[@]}"
    echo "installed in $(( $(date +%s) - start )) s, $(du -sh "$VENV" | cut -f1)"
fi
PY=$VENV/bin/python
# numba's compiled functions are cached beside the venv, not in the checkout.
export NUMBA_CACHE_DIR=$VENV/numba-cache

step "building diversity-gpu"
cargo build --release --quiet --bin diversity-gpu
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/diversity-gpu
PEER=$ROOT/benches/peers

step "machine"
grep -m1 'model name' /proc/cpuinfo || true
echo "$(nproc) cores; numpy $("$PY" -c 'import numpy; print(numpy.__version__)'), numba $("$PY" -c 'import numba; print(numba.__version__)')"

# The first 2,000 fortunes, with the embeddings of those poems only.
"$PY" - "$FORTUNES" "$WORK" <<'PY'
import json, sys
src, out = sys.argv[1], sys.argv[2]
key = lambda e: f"{e['category']}/{e['id']}" if e.get("category") else str(e["id"])
p = json.load(open(f"{src}/poems.json"))
e = json.load(open(f"{src}/embeddings.json"))
p["poems"] = p["poems"][:2000]
keys = {key(x) for x in p["poems"]}
e["embeddings"] = [x for x in e["embeddings"] if key(x) in keys]
json.dump(p, open(f"{out}/poems-2k.json", "w"))
json.dump(e, open(f"{out}/embeddings-2k.json", "w"))
PY

RESULTS=$WORK/results.jsonl
now() { date +%s.%N; }

# tool NAME ROUND POEMS EMBEDDINGS [args…]: one precompute, its phases recorded.
tool() {
    local name=$1 round=$2 poems=$3 emb=$4 out=$WORK/tool-$1
    shift 4
    rm -rf "$out"
    local t0 t1
    t0=$(now)
    "$BIN" --quiet precompute --poems "$poems" --embeddings "$emb" --out "$out" --backend cpu "$@" 2>"$WORK/tool.log" >/dev/null \
        || { cat "$WORK/tool.log"; fail "precompute on $name"; }
    t1=$(now)
    "$PY" - "$out/manifest.json" "$name" "$round" "$t0" "$t1" >>"$RESULTS" <<'PY'
import json, sys
m, name, rnd, t0, t1 = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
t = json.load(open(m))["timings"]
phases = {"load": t["load"] + t["normalise"], "matrix": t["similarity"], "similar": t["similar"],
          "walks": t["walks"], "whole": sum(t.values())}
print(json.dumps({"corpus": name, "round": rnd, "side": "tool", "phases": phases, "wall": t1 - t0}))
PY
}

# peer NAME ROUND POEMS EMBEDDINGS [args…]: one peer run, its phases recorded.
peer() {
    local name=$1 round=$2 poems=$3 emb=$4 out=$WORK/peer-$1
    shift 4
    rm -rf "$out"
    local t0 t1
    t0=$(now)
    "$PY" "$PEER/peer.py" --poems "$poems" --embeddings "$emb" --out "$out" --walk "$PEER_WALK" "$@" >"$WORK/peer.log" 2>&1 \
        || { cat "$WORK/peer.log"; fail "peer on $name"; }
    t1=$(now)
    "$PY" -c 'import json, sys; t = json.load(open(sys.argv[1])); print(json.dumps({"corpus": sys.argv[2], "round": int(sys.argv[3]), "side": "peer", "phases": t, "wall": float(sys.argv[5]) - float(sys.argv[4])}))' \
        "$out/timings.json" "$name" "$round" "$t0" "$t1" >>"$RESULTS"
}

# bench NAME POEMS EMBEDDINGS [args…]: R rounds, the order swapped each round.
bench() {
    local name=$1 poems=$2 emb=$3
    shift 3
    step "$name: $ROUNDS rounds ($*; peer walk: $PEER_WALK)"
    uptime
    for r in $(seq 1 "$ROUNDS"); do
        if [ $((r % 2)) = 1 ]; then
            tool "$name" "$r" "$poems" "$emb" "$@"
            peer "$name" "$r" "$poems" "$emb" "$@"
        else
            peer "$name" "$r" "$poems" "$emb" "$@"
            tool "$name" "$r" "$poems" "$emb" "$@"
        fi
        echo "   round $r done"
    done
    uptime
    echo "   agreement of the peer's orderings with the tool's (at least $MIN_AGREE %):"
    "$PY" "$PEER/agree.py" "$WORK/tool-$name/gen-1" "$WORK/peer-$name" "$MIN_AGREE" | sed 's/^/   /' \
        || fail "$name: the peer's orderings agree with the tool's on less than $MIN_AGREE %"
}

START=$(date +%s)
case $WHICH in 2k | both) bench "fortunes-2k-full" "$WORK/poems-2k.json" "$WORK/embeddings-2k.json" ;; esac
case $WHICH in fortunes | both) bench "fortunes-top100" "$FORTUNES/poems.json" "$FORTUNES/embeddings.json" --top-k 100 ;; esac

step "the exact peer (float64 GEMM, exact integer dots) must agree on 100 %"
name=fortunes-2k-full
[ "$WHICH" = fortunes ] && name=fortunes-top100
poems=$WORK/poems-2k.json emb=$WORK/embeddings-2k.json extra=()
[ "$WHICH" = fortunes ] && { poems=$FORTUNES/poems.json; emb=$FORTUNES/embeddings.json; extra=(--top-k 100); }
"$PY" "$PEER/peer.py" --poems "$poems" --embeddings "$emb" --out "$WORK/exact" --exact "${extra[@]}" >/dev/null
"$PY" "$PEER/agree.py" "$WORK/tool-$name/gen-1" "$WORK/exact" 100 | sed 's/^/   /' \
    || fail "the exact peer differs from the tool on $name"

step "results (seconds; ratio below 1: this tool is faster)"
"$PY" "$PEER/table.py" "$RESULTS"
[ "$ROUNDS" = 1 ] && WORD=round || WORD=rounds
echo "PASSED: peer benchmark, $ROUNDS $WORD, in $(( $(date +%s) - START )) s"
