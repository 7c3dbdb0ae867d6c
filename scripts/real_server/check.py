"""Checks embed's output against sentence-transformers computed in process.

usage: check.py MODEL_DIR POEMS_JSON EMBEDDINGS_JSON [PREFIX]
Every poem must have a vector with cosine >= 0.999 to all-MiniLM-L6-v2's,
computed here with the same prefix; prints the in-process throughput.
"""
import json
import sys
import time

import numpy as np
from sentence_transformers import SentenceTransformer


def main():
    model_dir, poems_path, emb_path = sys.argv[1:4]
    prefix = sys.argv[4] if len(sys.argv) > 4 else ""
    poems = json.load(open(poems_path))["poems"]
    got = json.load(open(emb_path))
    texts = [prefix + p["content"] for p in poems]
    model = SentenceTransformer(model_dir, device="cpu")
    start = time.perf_counter()
    want = model.encode(texts, batch_size=32, normalize_embeddings=True)
    secs = time.perf_counter() - start
    by_key = {}
    for e in got["embeddings"]:
        key = f'{e.get("category") or ""}/{e["id"]}' if e.get("category") else e["id"]
        by_key[key] = e
    worst, missing = 1.0, []
    for p, w in zip(poems, want):
        key = f'{p["category"]}/{p["id"]}' if p.get("category") else p["id"]
        e = by_key.get(key, {})
        if "embedding" not in e:
            missing.append(key)
            continue
        v = np.asarray(e["embedding"], dtype=np.float64)
        cos = float(v @ w / (np.linalg.norm(v) * np.linalg.norm(w)))
        worst = min(worst, cos)
    print(f"check: {len(poems) - len(missing)}/{len(poems)} vectors, worst cosine {worst:.6f}; "
          f"model {got['metadata'].get('embedding_model')}, dimension {got['metadata'].get('embedding_dimension')}")
    print(f"sentence-transformers in process: {len(texts)} texts in {secs:.2f} s = {len(texts) / secs:.1f} texts/s")
    if missing or worst < 0.999:
        print(f"FAILED: missing {missing[:5]}, worst cosine {worst}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
