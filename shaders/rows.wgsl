// The row-block shader: the similarity rows a list names, computed from the
// vectors for the GPU's row cache (src/gpu/row_cache.rs), BLOCK rows per
// workgroup.
//
// The block's row vectors are staged in workgroup memory once; the columns
// come from a word-major copy of the poems' vectors (`cols[k * stride + c]`,
// zero past the last poem), so neighbouring invocations read neighbouring
// words. Each invocation computes one u32 word (two columns) of every row of
// its block, so one load of a column word serves BLOCK rows. All arithmetic
// is exact i32, as in similarity.wgsl: the same integers, whatever the order.
// common.wgsl (lo, hi, pack, sim16) is prepended.

override WG: u32 = 256u;
// Words of BLOCK row vectors: BLOCK × words per vector.
override BLOCK_WORDS: u32 = 1536u;
const BLOCK: u32 = 8u;

struct Params {
    n: u32,            // poems: the columns
    dim_words: u32,    // u32 words per vector
    stride_words: u32, // u32 words per matrix row (two columns each)
    row0: u32,         // this tile's first pair in the list
    rows: u32,         // this tile's pairs
}

@group(0) @binding(0) var<storage, read> emb: array<u32>;
@group(0) @binding(1) var<storage, read_write> tile: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;
// Pairs: the vector of a row (a poem or a theme), the tile row it goes to.
@group(0) @binding(3) var<storage, read> list: array<u32>;
@group(0) @binding(4) var<storage, read> cols: array<u32>;

var<workgroup> block: array<u32, BLOCK_WORDS>;

@compute @workgroup_size(WG)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let r0 = wid.y * BLOCK;
    let rows = min(BLOCK, p.rows - r0);
    for (var i = lid; i < rows * p.dim_words; i += WG) {
        let v = list[2u * (p.row0 + r0 + i / p.dim_words)];
        block[i] = emb[v * p.dim_words + i % p.dim_words];
    }
    workgroupBarrier();
    let cw = gid.x;
    if (cw >= p.stride_words) {
        return;
    }
    let stride = 2u * p.stride_words;
    let c0 = 2u * cw;
    // Row r's dots with columns c0 and c0 + 1; rows past `rows` are unused.
    var d0 = array<i32, BLOCK>();
    var d1 = array<i32, BLOCK>();
    for (var k = 0u; k < p.dim_words; k++) {
        let x = cols[k * stride + c0];
        let y = cols[k * stride + c0 + 1u];
        for (var r = 0u; r < BLOCK; r++) {
            let w = block[r * p.dim_words + k];
            d0[r] += lo(x) * lo(w) + hi(x) * hi(w);
            d1[r] += lo(y) * lo(w) + hi(y) * hi(w);
        }
    }
    for (var r = 0u; r < rows; r++) {
        let at = list[2u * (p.row0 + r0 + r) + 1u];
        tile[at * p.stride_words + cw] = pack(sim16(d0[r]), sim16(d1[r]));
    }
}
