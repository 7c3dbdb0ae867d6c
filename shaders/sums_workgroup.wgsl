// Running sums in workgroup memory: each step then reads only the 2 bytes
// of matrix row per candidate from device memory. The sums move to and from
// the storage buffer once per dispatch, so that state survives between
// dispatches. SUMS_LEN is the most the adapter's workgroup storage holds.

override SUMS_LEN: u32 = 4096u;

@group(0) @binding(4) var<storage, read_write> sums: array<i32>;
var<workgroup> wsums: array<i32, SUMS_LEN>;

fn load_sum(base: u32, c: u32) -> i32 { return wsums[c]; }
fn store_sum(base: u32, c: u32, v: i32) { wsums[c] = v; }

fn sums_begin(base: u32, lid: u32, len: u32, fresh: bool) {
    // The first dispatch of a walk writes every sum before reading any.
    if (!fresh) {
        for (var c = lid; c < len; c += WG) {
            wsums[c] = sums[base + c];
        }
    }
    workgroupBarrier();
}

fn sums_end(base: u32, lid: u32, len: u32) {
    workgroupBarrier();
    for (var c = lid; c < len; c += WG) {
        sums[base + c] = wsums[c];
    }
}
