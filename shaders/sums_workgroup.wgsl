// Running sums in workgroup memory: each step then reads only the 2 bytes
// of matrix row per candidate from device memory. The first SUMS_LEN sums
// (the most the adapter's workgroup storage holds) live there; a longer
// row's remaining sums stay in the storage buffer. The workgroup part moves
// to and from the storage buffer once per dispatch, so that state survives
// between dispatches.

override SUMS_LEN: u32 = 4096u;

@group(0) @binding(4) var<storage, read_write> sums: array<i32>;
var<workgroup> wsums: array<i32, SUMS_LEN>;

fn load_sum(base: u32, c: u32) -> i32 {
    if (c < SUMS_LEN) {
        return wsums[c];
    }
    return sums[base + c];
}

fn store_sum(base: u32, c: u32, v: i32) {
    if (c < SUMS_LEN) {
        wsums[c] = v;
    } else {
        sums[base + c] = v;
    }
}

fn sums_begin(base: u32, lid: u32, len: u32, fresh: bool) {
    // The first dispatch of a walk writes every sum before reading any.
    if (!fresh) {
        for (var c = lid; c < min(len, SUMS_LEN); c += WG) {
            wsums[c] = sums[base + c];
        }
    }
    workgroupBarrier();
}

fn sums_end(base: u32, lid: u32, len: u32) {
    workgroupBarrier();
    for (var c = lid; c < min(len, SUMS_LEN); c += WG) {
        sums[base + c] = wsums[c];
    }
}
