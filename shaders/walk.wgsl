// The diversity walk for a batch of starts: one workgroup per start.
//
// Each step adds the last chosen poem's row to the running sums of the
// unchosen candidates and finds the lowest sum (lowest index on ties), in one
// fused pass followed by a workgroup reduction. common.wgsl (lo, hi, CHOSEN)
// and `reduce_argmin` (from reduce_shared.wgsl or reduce_subgroup.wgsl) are
// prepended to this file.
// A dispatch runs a bounded number of steps; the sums and the last choice
// stay in storage buffers between dispatches, so no dispatch runs long.
// (Sums in workgroup memory were tried: 2.3x slower on an H200, whose L2
// cache serves the storage buffer.)

override WG: u32 = 256u;
// Rows on the fly (src/gpu/row_cache.rs): the tiles hold a cache of rows and
// the host writes each walk's cache slot into `last` before every step, the
// first included; one step per dispatch.
override CACHED: bool = false;

struct Params {
    n: u32,            // candidates
    stride_words: u32, // u32 words per matrix row
    width: u32,        // indices per output row
    start0: u32,       // first start of the batch
    batch: u32,        // starts in the batch
    step0: u32,        // first step of this dispatch
    steps: u32,        // steps in this dispatch
    rows_per_tile: u32, // matrix rows held by each of the four tile bindings
}

@group(0) @binding(0) var<storage, read> mat0: array<u32>;
@group(0) @binding(1) var<storage, read> mat1: array<u32>;
@group(0) @binding(2) var<storage, read> mat2: array<u32>;
@group(0) @binding(3) var<storage, read> mat3: array<u32>;
// The running sums: one row of `2 * stride_words` per start in the batch.
@group(0) @binding(4) var<storage, read_write> sums: array<i32>;
@group(0) @binding(5) var<storage, read_write> out: array<u32>;
@group(0) @binding(6) var<storage, read_write> last: array<u32>;
@group(0) @binding(7) var<uniform> p: Params;

fn row_word(row: u32, w: u32) -> u32 {
    let t = row / p.rows_per_tile;
    let at = (row % p.rows_per_tile) * p.stride_words + w;
    switch t {
        case 0u: { return mat0[at]; }
        case 1u: { return mat1[at]; }
        case 2u: { return mat2[at]; }
        default: { return mat3[at]; }
    }
}

fn load_sum(base: u32, c: u32) -> i32 { return sums[base + c]; }
fn store_sum(base: u32, c: u32, v: i32) { sums[base + c] = v; }

struct Best {
    v: i32,
    i: u32,
}

// Keeps the lower value; on equal values the lower index. Each invocation
// visits its candidates in increasing index order, so strict < suffices.
fn consider(b: ptr<function, Best>, v: i32, i: u32) {
    if (v < (*b).v) {
        (*b).v = v;
        (*b).i = i;
    }
}

@compute @workgroup_size(WG)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let slot = wid.x + wid.y * nwg.x;
    if (slot >= p.batch) {
        return;
    }
    let s = p.start0 + slot;
    let base = slot * p.stride_words * 2u;
    for (var t = p.step0; t < p.step0 + p.steps; t++) {
        var b = Best(CHOSEN, 0xffffffffu);
        if (t == 0u) {
            // The start's own row seeds the sums; the start and padding are chosen.
            var own = s;
            if (CACHED) {
                own = last[slot];
            }
            for (var w = lid; w < p.stride_words; w += WG) {
                let r = row_word(own, w);
                let c = 2u * w;
                var v0 = lo(r);
                var v1 = hi(r);
                if (c >= p.n || c == s) { v0 = CHOSEN; }
                if (c + 1u >= p.n || c + 1u == s) { v1 = CHOSEN; }
                store_sum(base, c, v0);
                store_sum(base, c + 1u, v1);
                consider(&b, v0, c);
                consider(&b, v1, c + 1u);
            }
        } else {
            let prev = last[slot];
            for (var w = lid; w < p.stride_words; w += WG) {
                let r = row_word(prev, w);
                let c = 2u * w;
                var v0 = load_sum(base, c);
                var v1 = load_sum(base, c + 1u);
                if (v0 != CHOSEN) {
                    v0 += lo(r);
                    store_sum(base, c, v0);
                }
                if (v1 != CHOSEN) {
                    v1 += hi(r);
                    store_sum(base, c + 1u, v1);
                }
                consider(&b, v0, c);
                consider(&b, v1, c + 1u);
            }
        }
        let winner = reduce_argmin(b.v, b.i, lid);
        if (lid == 0u) {
            out[slot * p.width + t] = winner;
            store_sum(base, winner, CHOSEN);
            last[slot] = winner;
        }
        // The next step reads the choice and the sums this one wrote.
        storageBarrier();
        workgroupBarrier();
    }
}
