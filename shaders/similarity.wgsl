// The rounded similarity matrix, one tile of rows at a time.
//
// Embeddings hold two i16 components per u32 (low half first). Each
// invocation computes two adjacent columns of one row and writes them as one
// packed u32, so the tile is the same i16 layout the CPU backend uses.
// All arithmetic is exact i32: |partial dot| < 2^31 by Cauchy-Schwarz.
// common.wgsl (lo, hi, pack, sim16) is prepended.

override WG_X: u32 = 16u;
override WG_Y: u32 = 16u;

struct Params {
    n: u32,            // vectors
    dim_words: u32,    // u32 words per vector
    stride_words: u32, // u32 words per matrix row (two columns each)
    row0: u32,         // first row of this tile
    rows: u32,         // rows in this tile
}

@group(0) @binding(0) var<storage, read> emb: array<u32>;
@group(0) @binding(1) var<storage, read_write> tile: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;

fn dot(a: u32, b: u32) -> i32 {
    var acc = 0;
    for (var k = 0u; k < p.dim_words; k++) {
        let x = emb[a + k];
        let y = emb[b + k];
        acc += lo(x) * lo(y) + hi(x) * hi(y);
    }
    return acc;
}

@compute @workgroup_size(WG_X, WG_Y)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let cw = gid.x;
    let r = gid.y;
    if (r >= p.rows || cw >= p.stride_words) {
        return;
    }
    let i = p.row0 + r;
    let c0 = 2u * cw;
    var s0 = 0;
    var s1 = 0;
    // Padding columns stay zero, as on the CPU.
    if (c0 < p.n) {
        s0 = sim16(dot(i * p.dim_words, c0 * p.dim_words));
    }
    if (c0 + 1u < p.n) {
        s1 = sim16(dot(i * p.dim_words, (c0 + 1u) * p.dim_words));
    }
    tile[r * p.stride_words + cw] = pack(s0, s1);
}
