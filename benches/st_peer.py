"""The peer of `cargo bench --bench embed_local`: sentence-transformers in
process, on the same texts and model files, with its defaults (batches of 32,
its own length sorting, truncation at the model's window, normalised).

usage: st_peer.py MODEL_DIR TEXTS_JSON OUT_JSON
Writes {"load_s", "encode_s", "texts", "threads", "vectors"} to OUT_JSON.
"""
import json
import sys
import time

import torch
from sentence_transformers import SentenceTransformer


def main():
    model_dir, texts_path, out_path = sys.argv[1:4]
    texts = json.load(open(texts_path))
    t0 = time.perf_counter()
    model = SentenceTransformer(model_dir, device="cpu")
    t1 = time.perf_counter()
    vectors = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    t2 = time.perf_counter()
    json.dump(
        {
            "load_s": t1 - t0,
            "encode_s": t2 - t1,
            "texts": len(texts),
            "threads": torch.get_num_threads(),
            "vectors": vectors.tolist(),
        },
        open(out_path, "w"),
    )


if __name__ == "__main__":
    main()
