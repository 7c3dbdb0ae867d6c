// The matrix layout both backends share (src/matrix.rs is the Rust side):
// two i16 entries per u32 word, low half first, and the CHOSEN marker.
// Prepended to every shader (src/gpu/pipelines.rs composes them).

// Marks a chosen candidate in the running sums (matrix::CHOSEN).
const CHOSEN: i32 = 2147483647;

// The low and high i16 halves of a packed word, sign-extended.
fn lo(w: u32) -> i32 { return bitcast<i32>(w << 16u) >> 16u; }
fn hi(w: u32) -> i32 { return bitcast<i32>(w) >> 16u; }

// Two i16 values (in i32s) packed into one word, `a` in the low half: the
// inverse of lo and hi (matrix::pack_pair on the Rust side).
fn pack(a: i32, b: i32) -> u32 { return (bitcast<u32>(a) & 0xffffu) | (bitcast<u32>(b) << 16u); }

// (dot + 2^14) >> 15, clamped to i16: the specification's sim16.
fn sim16(d: i32) -> i32 { return clamp((d + 16384) >> 15u, -32768, 32767); }
