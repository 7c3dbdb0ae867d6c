"""Agreement of the peer's orderings with the tool's cache, per ordering kind.

Usage: python agree.py CACHE_GEN_DIR PEER_DIR MIN_PERCENT
The cache's similar.bin / different.bin hold n rows of `width` little-endian
indices (u16 when the manifest's index_bytes is 2, else u32), the included
poems in canonical order: the peer's .npy files have the same shape. Prints
the % of positions where both name the same poem; exits 1 below MIN_PERCENT.
"""

import json
import os
import sys

import numpy as np


def main():
    gen, peer, floor = sys.argv[1], sys.argv[2], float(sys.argv[3])
    manifest = json.load(open(os.path.join(os.path.dirname(gen.rstrip("/")), "manifest.json")))
    width = manifest["params"]["width"]
    dt = "<u2" if manifest["params"]["index_bytes"] == 2 else "<u4"
    ok = True
    for kind in ("similar", "different"):
        ours = np.fromfile(os.path.join(gen, f"{kind}.bin"), dtype=dt).reshape(-1, width)
        theirs = np.load(os.path.join(peer, f"{kind}.npy"))
        if theirs.shape != ours.shape:
            print(f"{kind}: shapes differ: tool {ours.shape}, peer {theirs.shape}")
            ok = False
            continue
        same = 100.0 * np.mean(ours == theirs.astype(ours.dtype))
        rows = 100.0 * np.mean(np.all(ours == theirs.astype(ours.dtype), axis=1))
        print(f"{kind}: {same:.2f} % of positions agree ({rows:.1f} % of rows whole)")
        ok &= same >= floor
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
