"""The peer a Python user would write instead of diversity-gpu's CPU backend.

numpy for the similarity matrix (float32 BLAS `E @ E.T` of the quantised
embeddings, by blocks of rows) and the similar orderings (argpartition for the top
K, then a stable argsort; a full stable argsort otherwise; the start left
out), and the diversity walk as one numba `@njit(parallel=True)` loop over
the starts: per step a fused add of the picked row to the running sums with
a running minimum, the chosen poems held at a value no real sum reaches, and
a branch-free search for the first index holding that minimum.

Arithmetic: the vectors are quantised as in src/quantize.rs
(`round(x / |x| * 32767)`) and held as float32 (small integers, exact); the
dot products come from float32 BLAS, so near 2^30 they are rounded. The similar
orderings sort those float32 dots; the walk reads them rounded like `sim16`
(`floor(dot / 32768 + 0.5)`, an i16 n x n matrix) with exact i32 running sums,
as the tool's walk does (the same 2 bytes of row per update). Ties go to the
lower index. The orderings differ from the tool's only where float32 rounding
reorders near-equal dots (about 0.1 % of positions). `--exact` computes the
dots in float64, exactly, and must agree with the tool everywhere.

Usage: python peer.py --poems P --embeddings E --out DIR [--top-k K]
       [--walk numba|numpy] [--exact]
Writes DIR/similar.npy and DIR/different.npy (uint16 or uint32 rows of the
included poems, canonical order) and DIR/timings.json (seconds per phase;
`jit` is numba's compile time, outside every phase and `whole`).
"""

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit, prange, get_num_threads

# A chosen poem's sum: above every real sum (|sum| <= n * 32767) for the
# whole walk, and HELD + n * 32767 still fits in i32, for n <= 16,383.
HELD = np.int32(1 << 30)
MAX_N = 16_383
# Rows of the similarity matrix computed at once.
BLOCK = 1024


@njit(parallel=True, cache=True)
def to_i16(s, out):
    """sim16 of src/quantize.rs: `(dot + 2^14) >> 15`, clamped to i16."""
    for i in prange(s.shape[0]):
        for j in range(s.shape[1]):
            v = np.floor(s[i, j] * (1.0 / 32768.0) + 0.5)
            out[i, j] = np.int16(min(max(v, -32768.0), 32767.0))


@njit(parallel=True, cache=True)
def walks_numba(w, starts, width, out):
    """One diversity walk per start, the starts spread over the threads."""
    n = w.shape[0]
    big = np.int32(0x7FFFFFFF)
    for t in prange(starts.shape[0]):
        s = starts[t]
        sums = np.empty(n, np.int32)
        row = w[s]
        for c in range(n):
            sums[c] = row[c]
        sums[s] = HELD
        m = sums.min()
        for step in range(width):
            # Branch-free (it vectorises): the first index holding m.
            idx = np.int32(n)
            for c in range(n):
                idx = min(idx, np.int32(c) if sums[c] == m else np.int32(n))
            out[t, step] = idx
            sums[idx] = HELD
            if step + 1 == width:
                break
            # Fused: add the picked row, keep the running minimum.
            row = w[idx]
            m = big
            for c in range(n):
                v = np.int32(sums[c] + row[c])
                sums[c] = v
                m = min(m, v)


def walks_numpy(w, starts, width, out, batch=256):
    """The batched numpy walk: each batch of starts steps together (argmin,
    gather of the picked rows, add), the batches spread over threads (numpy
    releases the GIL in each of these)."""

    def one(b0):
        st = starts[b0:b0 + batch]
        rows = np.arange(len(st))
        sums = w[st].astype(np.int32)
        sums[rows, st] = HELD
        for step in range(width):
            idx = sums.argmin(axis=1)
            out[b0 + rows, step] = idx
            if step + 1 == width:
                break
            sums += w[idx]
            sums[rows, idx] = HELD

    with ThreadPoolExecutor(get_num_threads()) as ex:
        list(ex.map(one, range(0, len(starts), batch)))


def key_of(e):
    c = e.get("category")
    return f"{c}/{e['id']}" if c else str(e["id"])


def load(poems_path, embeddings_path, dtype):
    """The included poems' quantised unit vectors, `round(x / |x| * 32767)` as
    in src/quantize.rs, in the poems file's order (as float32 or float64:
    integers below 2^15, held exactly by both)."""
    poems = json.load(open(poems_path))["poems"]
    vecs = {}
    for e in json.load(open(embeddings_path))["embeddings"]:
        vecs[key_of(e)] = e["embedding"]
    dim = None
    rows = []
    for p in poems:
        v = vecs.get(key_of(p))
        if v is None:
            continue
        dim = dim or len(v)
        v = np.asarray(v, dtype=np.float64)
        if len(v) != dim or not np.all(np.isfinite(v)):
            continue
        norm = np.sqrt(v @ v)
        if norm == 0:
            continue
        rows.append(v / norm)
    x = np.asarray(rows) * 32767.0
    # Rust's round: half away from zero.
    return (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(dtype)


def similar_block(s, lo, hi, k, out):
    """Rows lo..hi of the similar orderings (each row's own poem already at
    -inf):
    by similarity, descending, ties to the lower index."""
    neg = -s[lo:hi]
    if k is None:
        out[lo:hi] = np.argsort(neg, axis=1, kind="stable")[:, :-1]
        return
    part = np.sort(np.argpartition(neg, k - 1, axis=1)[:, :k], axis=1)
    vals = np.take_along_axis(neg, part, axis=1)
    order = np.argsort(vals, axis=1, kind="stable")
    out[lo:hi] = np.take_along_axis(part, order, axis=1)
    # A tie at the K-th value may have left out a lower index: redo those rows.
    kth = vals.max(axis=1, keepdims=True)
    short = np.flatnonzero((neg == kth).sum(axis=1) > (vals == kth).sum(axis=1))
    for r in short:
        cand = np.flatnonzero(neg[r] <= kth[r])
        out[lo + r] = cand[np.argsort(neg[r, cand], kind="stable")[:k]]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--poems", required=True)
    ap.add_argument("--embeddings", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--top-k", type=int)
    ap.add_argument("--walk", choices=["numba", "numpy"], default="numba")
    ap.add_argument(
        "--exact", action="store_true", help="float64 GEMM: exact integer dot products (slower; agrees on 100 %%)"
    )
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    dtype = np.float64 if a.exact else np.float32
    t = {}

    # numba compiles on first call (or loads its on-disk cache): done on a
    # tiny input first, and reported apart from the phases.
    t0 = time.perf_counter()
    wt = np.empty((4, 4), np.int16)
    to_i16(np.eye(4, dtype=dtype), wt)
    walks_numba(wt, np.arange(4), 3, np.empty((4, 3), np.uint32))
    t["jit"] = time.perf_counter() - t0

    start = time.perf_counter()
    t0 = start
    e = load(a.poems, a.embeddings, dtype)
    n = len(e)
    assert n <= MAX_N, f"{n} poems: the i32 sums would overflow"
    t["load"] = time.perf_counter() - t0

    # The matrix by blocks of rows, each block's similar orderings taken
    # while it is at hand: no n x n float matrix is ever held (its first
    # touch alone costs seconds on fortunes). The phases are timed apart.
    width = n - 1 if a.top_k is None else min(a.top_k, n - 1)
    idx_t = np.uint16 if n <= 65536 else np.uint32
    t["matrix"] = t["similar"] = 0.0
    t0 = time.perf_counter()
    w = np.empty((n, n), np.int16)
    sim = np.empty((n, width), idx_t)
    buf = np.empty((min(BLOCK, n), n), dtype)
    t["matrix"] += time.perf_counter() - t0
    with ThreadPoolExecutor(get_num_threads()) as ex:
        for lo in range(0, n, BLOCK):
            hi = min(lo + BLOCK, n)
            t0 = time.perf_counter()
            s = np.matmul(e[lo:hi], e.T, out=buf[: hi - lo])
            to_i16(s, w[lo:hi])
            t1 = time.perf_counter()
            s[np.arange(hi - lo), np.arange(lo, hi)] = -np.inf
            part = sim[lo:hi]
            subs = range(0, hi - lo, 256)
            list(ex.map(lambda r: similar_block(s, r, min(r + 256, hi - lo), a.top_k, part), subs))
            t["matrix"] += t1 - t0
            t["similar"] += time.perf_counter() - t1
    del buf

    t0 = time.perf_counter()
    diff = np.empty((n, width), np.uint32)
    starts = np.arange(n)
    if a.walk == "numba":
        walks_numba(w, starts, width, diff)
    else:
        walks_numpy(w, starts, width, diff)
    t["walks"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    np.save(os.path.join(a.out, "similar.npy"), sim)
    np.save(os.path.join(a.out, "different.npy"), diff.astype(idx_t))
    t["write"] = time.perf_counter() - t0
    t["whole"] = time.perf_counter() - start
    t["n"] = n
    t["threads"] = get_num_threads()
    json.dump(t, open(os.path.join(a.out, "timings.json"), "w"), indent=1)
    print(json.dumps(t))


if __name__ == "__main__":
    main()
