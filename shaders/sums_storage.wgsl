// Running sums in a storage buffer: one row of `len` per start in the batch.
// Used when a row of sums does not fit in workgroup memory.

@group(0) @binding(4) var<storage, read_write> sums: array<i32>;

fn load_sum(base: u32, c: u32) -> i32 { return sums[base + c]; }
fn store_sum(base: u32, c: u32, v: i32) { sums[base + c] = v; }
fn sums_begin(base: u32, lid: u32, len: u32, fresh: bool) {}
fn sums_end(base: u32, lid: u32, len: u32) {}
